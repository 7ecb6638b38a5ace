"""Fire-alarm control panel model: pure logic, no I/O.

The panel has `zones` detection zones, each with alarm, trouble and supervisory signals,
named as in profiles/firepanel.yaml (`zone_3_alarm`). Faults `fire_alarm`, `fire_trouble`
and `fire_supervisory` take a zone (1 when none is given) and hold that signal while
active. `panel_state` follows the profile's enum: 1 normal, 2 alarm (any zone in alarm),
3 trouble (any trouble or supervisory signal and no alarm); 4 (silenced) is not simulated."""

from __future__ import annotations

from simulators.models import PointValue, UnsupportedFault

PANEL_NORMAL = 1
PANEL_ALARM = 2
PANEL_TROUBLE = 3

_SIGNAL_OF_FAULT = {
    "fire_alarm": "alarm",
    "fire_trouble": "trouble",
    "fire_supervisory": "supervisory",
}


class FirePanelModel:
    device_type = "fire_panel"

    def __init__(self, *, seed: int = 0, zones: int = 4) -> None:
        self.zones = zones
        self._active: set[tuple[int, str]] = set()

    def step(self, now: float) -> None:
        """Nothing changes on its own: a panel's signals are driven by faults only."""

    def points(self) -> dict[str, PointValue]:
        values: dict[str, PointValue] = {}
        for zone in range(1, self.zones + 1):
            for signal in _SIGNAL_OF_FAULT.values():
                values[f"zone_{zone}_{signal}"] = (zone, signal) in self._active
        values["panel_state"] = self.panel_state
        return values

    @property
    def panel_state(self) -> int:
        signals = {signal for _, signal in self._active}
        if "alarm" in signals:
            return PANEL_ALARM
        if signals:
            return PANEL_TROUBLE
        return PANEL_NORMAL

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None:
        signal = _SIGNAL_OF_FAULT.get(name)
        if signal is None:
            raise UnsupportedFault(self.device_type, name)
        zone = 1 if zone is None else zone
        if not 1 <= zone <= self.zones:
            raise ValueError(f"zone {zone} is not a zone of this panel (1-{self.zones})")
        if active:
            self._active.add((zone, signal))
        else:
            self._active.discard((zone, signal))
