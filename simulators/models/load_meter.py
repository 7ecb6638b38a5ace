"""Values of a load-mode device: plausible, cheap to compute, for any Modbus profile; pure
logic, no I/O.

`LoadValues(profile, index)` picks a base value per point from its unit and name (230 V
phase and 400 V line voltages, 120 A, 25 kW, 50 Hz, power factor 0.95, a serial number,
breakers closed, alarms off, ...). Only the "live" points change: measurements wobble a
few percent around their base on a slow cycle (each device and point with its own phase)
and counters (kWh, kvarh, Wh, h) grow at a steady rate; everything else is static, so a
load server re-encodes only `live_points`, which keeps 2,000 devices cheap."""

from __future__ import annotations

import math

from facility.profiles import DataType, ModbusPoint, ModbusProfile
from simulators.models import PointValue

WOBBLE_PERIOD_S = 300.0
WOBBLE = 0.02
BASE_BY_UNIT: dict[str, float] = {
    "V": 230.0, "A": 120.0, "kW": 25.0, "kvar": 8.0, "kVA": 27.0, "Hz": 50.0, "%": 2.5,
    "degC": 38.0, "MPa": 0.45, "m": 2.0, "kg": 300.0, "m/s": 1.0, "min": 15.0,
}
LIVE_UNITS = {"V", "A", "kW", "kvar", "kVA", "Hz", "MPa", "degC"}
# counters: base value and growth per hour
COUNTER_UNITS: dict[str, tuple[float, float]] = {
    "kWh": (123_456.0, 25.0), "kvarh": (23_456.0, 8.0), "Wh": (123_456_789.0, 25_000.0),
    "h": (20_000.0, 1.0),
}
TRUE_SUFFIXES = ("closed", "_ok", "remote_mode", "running")


def _base(point: ModbusPoint, index: int) -> PointValue | str:
    name = point.name
    if point.type is DataType.STRING:
        return f"LM{index:06d}"
    if point.type is DataType.BOOL:
        return name.endswith(TRUE_SUFFIXES)
    if "power_factor" in name:
        return 0.95
    if point.unit == "V" and any(p in name for p in ("l12", "l23", "l31")):
        return 400.0
    if point.unit in COUNTER_UNITS:
        return COUNTER_UNITS[point.unit][0] + 7 * index
    if name.endswith("_ratio"):
        return 40
    if name == "firmware_version":
        return 312
    return BASE_BY_UNIT.get(point.unit, 0.0)


class LoadValues:
    def __init__(self, profile: ModbusProfile, index: int) -> None:
        self.index = index
        self.base: dict[str, PointValue | str] = {p.name: _base(p, index) for p in profile.points}
        self.live_points = tuple(
            p for p in profile.points
            if p.type not in (DataType.BOOL, DataType.STRING)
            and (p.unit in LIVE_UNITS or p.unit in COUNTER_UNITS or "power_factor" in p.name)
        )
        self._phase = {p.name: (index * 0.7 + i * 1.3) % (2 * math.pi)
                       for i, p in enumerate(self.live_points)}

    def initial(self) -> dict[str, PointValue | str]:
        return dict(self.base)

    def live(self, now: float) -> dict[str, PointValue]:
        """The live points' values at `now` (seconds)."""
        values: dict[str, PointValue] = {}
        for p in self.live_points:
            base = float(self.base[p.name])
            if p.unit in COUNTER_UNITS:
                values[p.name] = int(base + COUNTER_UNITS[p.unit][1] * now / 3600.0)
                continue
            wobble = WOBBLE * math.sin(2 * math.pi * now / WOBBLE_PERIOD_S + self._phase[p.name])
            value = base * (1 + wobble)
            values[p.name] = min(value, 1.0) if "power_factor" in p.name else value
        return values
