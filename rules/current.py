"""What the rules service remembers of the field between messages; no I/O.

``CurrentValues`` keeps each device's current good point values from telemetry (a point
reported bad or stale is forgotten, so a condition reading it becomes unknown; a device that
goes offline is forgotten entirely), and apart from them the points reported ``bad`` with
the device's flags for each ("" when none came): the quality functions of the condition
language read them. A point reported ``stale`` is neither good nor bad (unknown).
``GatewaySessions`` drops a stale death: an offline status whose session is not the
gateway's current one (the will of an old connection that arrives after the gateway has
reconnected). ``SequenceGuard`` spots live telemetry that is not newer than what a device
already reported (``seq`` increases per gateway session)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from facility.messages import GatewayStatus, Telemetry, Value

_MISSING = object()
_NO_BAD: Mapping[str, str] = MappingProxyType({})


class CurrentValues:
    def __init__(self) -> None:
        self._values: dict[str, dict[str, Value]] = {}
        self._bad: dict[str, dict[str, str]] = {}

    def update(self, device: str, msg: Telemetry) -> Mapping[str, Value]:
        """Merge a live message; returns a snapshot of the device's current values."""
        return self.merge(device, msg)[0]

    def merge(self, device: str, msg: Telemetry) -> tuple[Mapping[str, Value], frozenset[str]]:
        """Merge a live message; the snapshot and the names whose value (or goodness)
        changed."""
        values = self._values.setdefault(device, {})
        changed: set[str] = set()
        for name, quality in msg.quality.items():
            if quality != "good" and values.pop(name, None) is not None:
                changed.add(name)
        self._merge_bad(device, msg, changed)
        for name, value in msg.points.items():
            if msg.quality.get(name, "good") == "good":
                old = values.get(name, _MISSING)
                if old is _MISSING or old != value or type(old) is not type(value):
                    values[name] = value
                    changed.add(name)
        return dict(values), frozenset(changed)

    def _merge_bad(self, device: str, msg: Telemetry, changed: set[str]) -> None:
        """Points reported bad (with their flags) join the device's bad points; a point
        reported with another quality, or with a value, leaves them."""
        bad = self._bad.get(device)
        if not bad and "bad" not in msg.quality.values():
            return  # the common case: nothing bad before or now
        flags = msg.flags or {}
        for name, quality in msg.quality.items():
            if quality == "bad":
                now = flags.get(name, "")
                if bad is None:
                    bad = self._bad[device] = {}
                if bad.get(name) != now:
                    bad[name] = now
                    changed.add(name)
            elif bad and bad.pop(name, None) is not None:
                changed.add(name)
        if bad:
            for name in msg.points.keys() & bad.keys():
                if msg.quality.get(name, "good") == "good":
                    del bad[name]
                    changed.add(name)

    def bad(self, device: str) -> Mapping[str, str]:
        """The device's points reported bad: name -> flags ("" when none came)."""
        bad = self._bad.get(device)
        return dict(bad) if bad else _NO_BAD

    def overlay(self, device: str, msg: Telemetry) -> Mapping[str, Value]:
        """The current values with a (historical) message's good points on top, unstored."""
        merged = dict(self._values.get(device, {}))
        merged.update({n: v for n, v in msg.points.items()
                       if msg.quality.get(n, "good") == "good"})
        return merged

    def seed(self, device: str, values: Mapping[str, Value]) -> None:
        """Replace the device's values (a replay starting from what is known live)."""
        self._values[device] = dict(values)

    def forget(self, device: str) -> None:
        self._values.pop(device, None)
        self._bad.pop(device, None)

    def get(self, device: str) -> Mapping[str, Value]:
        return dict(self._values.get(device, {}))


class GatewaySessions:
    def __init__(self) -> None:
        self._sessions: dict[str, str] = {}

    def accept(self, gateway: str, status: GatewayStatus) -> bool:
        """Record an online session; False for the death of a session that is not current."""
        if status.state == "online":
            self._sessions[gateway] = status.session
            return True
        current = self._sessions.get(gateway)
        return current is None or current == status.session


class SequenceGuard:
    def __init__(self) -> None:
        self._last: dict[str, tuple[str, int]] = {}

    def check(self, device: str, msg: Telemetry) -> int | None:
        """None for a message to evaluate (remembered as the device's latest); the last seq
        for a duplicate or out-of-order one (same session, seq not above the last). A new
        session (the gateway restarted) starts afresh."""
        last = self._last.get(device)
        if last is not None and last[0] == msg.session and msg.seq <= last[1]:
            return last[1]
        self._last[device] = (msg.session, msg.seq)
        return None
