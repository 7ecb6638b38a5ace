"""Combustible-gas detector controller and the supply's emergency shut-off valve: pure logic,
no I/O, deterministic for a seed.

Normally the concentration reads a little above zero (%LEL), the supply pressure holds near
`nominal_kpa` (a building's low-pressure gas service, about 2 kPa) and the valve is open.
Fault `gas_leak`: the concentration rises at `rise_lel_per_s` towards `leak_lel`; at
`alarm_lel` the controller alarms (`gas_alarm`) and closes the shut-off valve, so the supply
pressure behind it falls to zero. The alarm latches and the valve stays shut until the fault
ends (a person resets the controller and reopens the valve once the gas is gone), and the
concentration then falls at `fall_lel_per_s`. Fault `gas_outage`: the gas company's supply
is lost (意外停气): the pressure falls to zero with the valve open and no gas in the air."""

from __future__ import annotations

import random

from simulators.models import PointValue, UnsupportedFault

FAULTS = ("gas_leak", "gas_outage")


class GasDetectorModel:
    device_type = "gas_detector"

    def __init__(
        self,
        *,
        seed: int = 0,
        nominal_kpa: float = 2.0,
        alarm_lel: float = 20.0,
        leak_lel: float = 35.0,
        rise_lel_per_s: float = 2.0,
        fall_lel_per_s: float = 3.0,
    ) -> None:
        self._rng = random.Random(seed)
        self.nominal_kpa = nominal_kpa
        self.alarm_lel = alarm_lel
        self.leak_lel = leak_lel
        self.rise_lel_per_s = rise_lel_per_s
        self.fall_lel_per_s = fall_lel_per_s
        self.concentration_lel = 0.0
        self.alarm = False
        self.leak = False
        self.outage = False
        self._noise = 0.0
        self._last: float | None = None

    @property
    def valve_closed(self) -> bool:
        return self.alarm

    def step(self, now: float) -> None:
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        self._noise = self._rng.uniform(0.0, 1.0)
        if self.leak:
            self.concentration_lel = min(
                self.leak_lel, self.concentration_lel + self.rise_lel_per_s * dt
            )
        else:
            self.concentration_lel = max(0.0, self.concentration_lel - self.fall_lel_per_s * dt)
        if self.leak and self.concentration_lel >= self.alarm_lel:
            self.alarm = True  # latched until the leak is dealt with (the fault ends)

    def points(self) -> dict[str, PointValue]:
        no_supply = self.outage or self.valve_closed
        pressure = 0.0 if no_supply else self.nominal_kpa + 0.05 * self._noise
        return {
            "gas_concentration": round(self.concentration_lel + 0.5 * self._noise, 1),
            "supply_pressure": round(pressure, 2),
            "gas_alarm": self.alarm,
            "valve_closed": self.valve_closed,
            "detector_fault": False,
        }

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None:
        if name not in FAULTS:
            raise UnsupportedFault(self.device_type, name)
        if name == "gas_outage":
            self.outage = active
            return
        self.leak = active
        if not active:
            self.alarm = False  # reset at the controller; the valve is reopened
