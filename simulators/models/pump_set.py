"""Constant-pressure domestic water pump set model: pure logic, no I/O, deterministic.

A VFD holds the outlet pressure near its setpoint; demand follows a slow cycle, the VFD
frequency follows demand, the duty pump rotates every `rotation_s` and the standby pump
assists at high demand; run-hour counters integrate running time; the municipal inlet
pressure stays near nominal. The break tank's float valve refills it (`refill_mps`) faster
than the pumps draw (`draw_mps` at full demand), so it stays full; the tank is compressed in
time (a real one takes hours to drain) so that its faults show within minutes. The outlet
pressure is a first-order lag towards what the running pumps can hold (or the static head
`static_mpa` when none runs), so it falls over seconds when the pumps stop, as taps drain
the riser.

Faults: `water_outage` (inlet pressure lost, the tank drains and the pumps stop dry-run
protected below `dry_run_level_m`), `tank_level_low` (the float valve sticks and opens only
once the level is down at `low_level_m`: the tank drains at the draw rate and then runs at
that level, above the dry-run and water-outage levels), `pump_fault` (pump `zone`, default 1,
trips and the other takes over), `low_pressure` (the set cannot hold its setpoint),
`high_pressure` (the pressure control fails: the VFD runs at 50 Hz whatever the demand and
the outlet rises to `high_ratio` times the setpoint) and `vfd_fault` (the VFD trips: both
pumps it drives stop and the pressure falls). `set_power(False)` (the building's power
outage) stops both pumps and the VFD until the supply returns."""

from __future__ import annotations

import math
import random

from simulators.models import PointValue, UnsupportedFault

DEMAND_PERIOD_S = 900.0
FAULTS = (
    "water_outage", "tank_level_low", "pump_fault", "low_pressure", "high_pressure", "vfd_fault"
)
PUMPS = 2


class PumpSetModel:
    device_type = "pump_set"

    def __init__(
        self,
        *,
        seed: int = 0,
        setpoint_mpa: float = 0.45,
        rotation_s: float = 600.0,
        tank_full_m: float = 2.5,
        dry_run_level_m: float = 0.3,
        static_mpa: float = 0.05,
        pressure_tau_s: float = 4.0,
        draw_mps: float = 0.03,
        refill_mps: float = 0.05,
        low_level_m: float = 0.8,
        high_ratio: float = 1.35,
    ) -> None:
        self._rng = random.Random(seed)
        self.setpoint_mpa = setpoint_mpa
        self.rotation_s = rotation_s
        self.tank_full_m = tank_full_m
        self.dry_run_level_m = dry_run_level_m
        self.static_mpa = static_mpa
        self.pressure_tau_s = pressure_tau_s
        self.draw_mps = draw_mps
        self.refill_mps = refill_mps
        self.low_level_m = low_level_m
        self.high_ratio = high_ratio
        self.tank_level_m = tank_full_m
        self.outlet_mpa = setpoint_mpa
        self.run_s = [float(self._rng.randint(1000, 9000)) * 3600.0 for _ in range(PUMPS)]
        self._phase = self._rng.uniform(0, 2 * math.pi)
        self.faults: set[str] = set()
        self.tripped: set[int] = set()  # pump numbers (1-based) with a pump fault
        self.powered = True
        self._now = 0.0
        self._last: float | None = None
        self._noise = 0.0

    def _demand(self) -> float:
        return 0.55 + 0.35 * math.sin(2 * math.pi * self._now / DEMAND_PERIOD_S + self._phase)

    def _running(self) -> tuple[bool, ...]:
        if not self.powered or "vfd_fault" in self.faults:
            return (False,) * PUMPS
        if "water_outage" in self.faults and self.tank_level_m <= self.dry_run_level_m:
            return (False,) * PUMPS
        healthy = [n for n in range(1, PUMPS + 1) if n not in self.tripped]
        if not healthy:
            return (False,) * PUMPS
        duty_index = int(self._now // self.rotation_s) % PUMPS
        duty = duty_index + 1 if duty_index + 1 in healthy else healthy[0]
        both = self._demand() > 0.8 or "low_pressure" in self.faults
        return tuple(n == duty or (both and n in healthy) for n in range(1, PUMPS + 1))

    def _target_pressure(self, running: tuple[bool, ...]) -> float:
        if not any(running):
            return self.static_mpa
        if "low_pressure" in self.faults:
            return self.setpoint_mpa * 0.5
        if "high_pressure" in self.faults:
            return self.setpoint_mpa * self.high_ratio
        return self.setpoint_mpa + 0.005 * self._noise

    def step(self, now: float) -> None:
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        self._now = now
        self._noise = self._rng.uniform(-1.0, 1.0)
        running = self._running()
        for i, on in enumerate(running):
            if on:
                self.run_s[i] += dt
        self._fill_tank(running, dt)
        target = self._target_pressure(running)
        self.outlet_mpa += (target - self.outlet_mpa) * (1 - math.exp(-dt / self.pressure_tau_s))

    def _fill_tank(self, running: tuple[bool, ...], dt: float) -> None:
        """What the pumps draw leaves the tank; what the float valve admits refills it."""
        draw = self.draw_mps * self._demand() if any(running) else 0.0
        if "water_outage" in self.faults:
            inflow = 0.0
        elif "tank_level_low" in self.faults and self.tank_level_m > self.low_level_m:
            inflow = 0.0  # the stuck float valve stays shut until the level is this low
        else:
            inflow = self.refill_mps
        level = self.tank_level_m + (inflow - draw) * dt
        self.tank_level_m = min(self.tank_full_m, max(0.0, level))

    def points(self) -> dict[str, PointValue]:
        running = self._running()
        outage = "water_outage" in self.faults
        if not any(running):
            freq = 0.0
        elif self.faults & {"low_pressure", "high_pressure"}:
            freq = 50.0
        else:
            freq = min(50.0, 30.0 + 20.0 * self._demand())
        return {
            "outlet_pressure": round(self.outlet_mpa, 4),
            "pressure_setpoint": self.setpoint_mpa,
            "vfd_frequency": round(freq, 2),
            "tank_level": round(self.tank_level_m, 3),
            "inlet_pressure": 0.0 if outage else round(0.15 + 0.003 * self._noise, 4),
            "pump_1_running": running[0],
            "pump_2_running": running[1],
            "pump_1_fault": 1 in self.tripped,
            "pump_2_fault": 2 in self.tripped,
            "vfd_fault": "vfd_fault" in self.faults,
            "run_hours_1": int(self.run_s[0] // 3600),
            "run_hours_2": int(self.run_s[1] // 3600),
        }

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None:
        if name not in FAULTS:
            raise UnsupportedFault(self.device_type, name)
        if name == "pump_fault":
            pump = 1 if zone is None else zone
            if not 1 <= pump <= PUMPS:
                raise ValueError(f"pump {pump} is not a pump of this set (1-{PUMPS})")
            if active:
                self.tripped.add(pump)
            else:
                self.tripped.discard(pump)
            return
        if active:
            self.faults.add(name)
        else:
            self.faults.discard(name)

    def set_power(self, powered: bool) -> None:
        """Mains supply of the building: without it no pump runs."""
        self.powered = powered
