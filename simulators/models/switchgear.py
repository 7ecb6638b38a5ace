"""Low-voltage incoming switchgear model: pure logic, no I/O, deterministic for a seed.

Three-phase voltages near 230 V, currents following a slow load cycle, active power from
V, I and power factor, an energy counter that integrates power, breakers closed and a
transformer temperature that follows the load. Fault `power_outage` drops the incoming
supply: voltages, currents and power fall to zero and the incoming breaker trips on
undervoltage; it recloses when the supply returns."""

from __future__ import annotations

import math
import random

from simulators.models import PointValue, UnsupportedFault

LOAD_PERIOD_S = 600.0


class SwitchgearModel:
    device_type = "switchgear"

    def __init__(self, *, seed: int = 0, nominal_v: float = 230.0, peak_a: float = 250.0) -> None:
        self._rng = random.Random(seed)
        self.nominal_v = nominal_v
        self.peak_a = peak_a
        self._phase = self._rng.uniform(0, 2 * math.pi)
        self.energy_kwh = float(self._rng.randint(100_000, 900_000))
        self.outage = False
        self._last: float | None = None
        self._now = 0.0
        self._noise = [0.0] * 6

    def step(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self.energy_kwh += self._power_kw(now) * (now - self._last) / 3600.0
        self._last = now
        self._now = now
        self._noise = [self._rng.uniform(-1.0, 1.0) for _ in range(6)]

    def _load(self, now: float) -> float:
        """Fraction of peak load, 0.45 to 0.95 over a slow cycle."""
        return 0.7 + 0.25 * math.sin(2 * math.pi * now / LOAD_PERIOD_S + self._phase)

    def _power_factor(self, now: float) -> float:
        return 0.92 + 0.04 * self._load(now)

    def _power_kw(self, now: float) -> float:
        if self.outage:
            return 0.0
        current = self.peak_a * self._load(now)
        return 3 * self.nominal_v * current * self._power_factor(now) / 1000.0

    def points(self) -> dict[str, PointValue]:
        now = self._now
        live = not self.outage
        values: dict[str, PointValue] = {}
        for i in range(3):
            v = self.nominal_v + 2.0 * self._noise[i]
            a = self.peak_a * self._load(now) * (1 + 0.03 * self._noise[3 + i])
            values[f"voltage_l{i + 1}"] = round(v, 1) if live else 0.0
            values[f"current_l{i + 1}"] = round(a, 1) if live else 0.0
        values["active_power_kw"] = round(self._power_kw(now), 1)
        values["power_factor"] = round(self._power_factor(now), 3) if live else 0.0
        values["energy_kwh"] = int(self.energy_kwh)
        values["transformer_temp_c"] = round(35.0 + (25.0 * self._load(now) if live else 0.0), 1)
        values["incoming_breaker_closed"] = live
        values["feeder_1_breaker_closed"] = True
        values["feeder_2_breaker_closed"] = True
        return values

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None:
        if name != "power_outage":
            raise UnsupportedFault(self.device_type, name)
        self.outage = active
