"""Water-leak detection controller model: pure logic, no I/O, deterministic.

Four leak-sensor zones (`zone_1_leak` ... `zone_4_leak`, profiles/leak_detector.yaml) and a
water-depth gauge in the lowest sump pit (`water_depth`, mm). Fault `water_leak` wets the
sensor of a zone (1 when none is given) while active: a leak from a pipe or a valve in a
pump room, a basement or a pipe shaft (泄水). Fault `flooding` lets water into the sump faster
than its pump removes it: the depth rises at `rise_mm_per_s` up to `max_depth_mm`; once the
fault ends the sump pump lowers it at `drain_mm_per_s` to the dry reading (a few mm of
noise-free residue). The depth gauge is a separate sensor from the leak zones, so a flood is
one signal and a leak another."""

from __future__ import annotations

from simulators.models import PointValue, UnsupportedFault

FAULTS = ("water_leak", "flooding")
DRY_DEPTH_MM = 3.0


class LeakDetectorModel:
    device_type = "leak_detector"

    def __init__(
        self,
        *,
        seed: int = 0,
        zones: int = 4,
        rise_mm_per_s: float = 4.0,
        drain_mm_per_s: float = 6.0,
        max_depth_mm: float = 400.0,
    ) -> None:
        self.zones = zones
        self.rise_mm_per_s = rise_mm_per_s
        self.drain_mm_per_s = drain_mm_per_s
        self.max_depth_mm = max_depth_mm
        self.depth_mm = DRY_DEPTH_MM
        self.wet: set[int] = set()
        self.flooding = False
        self._last: float | None = None

    def step(self, now: float) -> None:
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        if self.flooding:
            self.depth_mm = min(self.max_depth_mm, self.depth_mm + self.rise_mm_per_s * dt)
        else:
            self.depth_mm = max(DRY_DEPTH_MM, self.depth_mm - self.drain_mm_per_s * dt)

    def points(self) -> dict[str, PointValue]:
        values: dict[str, PointValue] = {
            f"zone_{zone}_leak": zone in self.wet for zone in range(1, self.zones + 1)
        }
        values["water_depth"] = round(self.depth_mm)
        return values

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None:
        if name not in FAULTS:
            raise UnsupportedFault(self.device_type, name)
        if name == "flooding":
            self.flooding = active
            return
        zone = 1 if zone is None else zone
        if not 1 <= zone <= self.zones:
            raise ValueError(f"zone {zone} is not a zone of this detector (1-{self.zones})")
        if active:
            self.wet.add(zone)
        else:
            self.wet.discard(zone)
