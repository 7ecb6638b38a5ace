"""Report-on-change with deadbands, plus a periodic full snapshot; pure, no I/O, no clock.

``ReportState`` remembers, per device, the last value *sent* for each point (so a slow drift
is reported once it has moved a deadband from what consumers last saw, not lost in steps
smaller than the deadband) and when the last full snapshot went out. ``decide`` takes one
poll's values and bad points and the current monotonic time, and says what to send: the
changed points, or every point when a report period has passed and the poll read every
point (``complete``), or nothing. A number changes when it moves more than its absolute
deadband, or more than its percent deadband of the last value sent; a bool or a string on
any change; a point turning bad, or good again, is always a change. Event points (alarm and
state points: bools and points tagged ``state``, ``alarm`` or ``fault``) ignore deadbands,
and a report that carries a change of one is ``urgent``: the store-and-forward queue never
drops it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from facility.messages import Quality, Value


@dataclass(frozen=True, slots=True)
class Report:
    points: dict[str, Value]
    quality: dict[str, Quality]
    full: bool
    urgent: bool = False


class ReportedPoint(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def deadband(self) -> float: ...
    @property
    def deadband_percent(self) -> float: ...
    @property
    def is_event(self) -> bool: ...


class ReportState:
    def __init__(
        self, deadbands: Mapping[str, float], report_period_s: float, *,
        percent: Mapping[str, float] | None = None, events: Iterable[str] = (),
    ) -> None:
        self._deadbands = dict(deadbands)
        self._percent = dict(percent or {})
        self._events = frozenset(events)
        self._period_s = report_period_s
        self._sent: dict[str, Value] = {}
        self._bad: set[str] = set()
        self._last_full: float | None = None

    @classmethod
    def for_points(cls, points: Iterable[ReportedPoint], report_period_s: float) -> ReportState:
        pts = list(points)
        return cls({p.name: p.deadband for p in pts}, report_period_s,
                   percent={p.name: p.deadband_percent for p in pts if p.deadband_percent},
                   events=[p.name for p in pts if p.is_event])

    def force_snapshot(self) -> None:
        """Send the next complete poll as a full snapshot (a new broker connection)."""
        self._last_full = None

    def snapshot_due(self, now: float) -> bool:
        """True when the next complete poll will be sent as a full snapshot."""
        return self._last_full is None or now - self._last_full >= self._period_s

    def decide(self, values: Mapping[str, Value], bad: frozenset[str] | set[str], now: float,
               *, complete: bool = True) -> Report | None:
        """What to publish for this poll (None: nothing), and remember it as sent."""
        changed = {n: v for n, v in values.items() if self._changed(n, v)}
        newly_bad = set(bad) - self._bad
        urgent = any(n in self._events for n in (*changed, *newly_bad))
        if complete and self.snapshot_due(now):
            return self._full(values, bad, now, urgent)
        if not changed and not newly_bad:
            return None
        quality: dict[str, Quality] = {n: "good" for n in changed}
        quality.update({n: "bad" for n in newly_bad})
        self._sent.update(changed)
        self._bad = (self._bad | newly_bad) - changed.keys()
        return Report(points=changed, quality=quality, full=False, urgent=urgent)

    def _full(self, values: Mapping[str, Value], bad: frozenset[str] | set[str], now: float,
              urgent: bool) -> Report:
        self._last_full = now
        self._sent.update(values)
        self._bad = set(bad) - values.keys()
        quality: dict[str, Quality] = {n: "good" for n in values}
        quality.update({n: "bad" for n in self._bad})
        return Report(points=dict(values), quality=quality, full=True, urgent=urgent)

    def _changed(self, name: str, value: Value) -> bool:
        if name in self._bad or name not in self._sent:
            return True
        last = self._sent[name]
        if name not in self._events and _is_number(value) and _is_number(last):
            delta = abs(float(value) - float(last))
            pct = self._percent.get(name)
            if pct:
                return delta > abs(float(last)) * pct / 100.0 or (last == 0 and delta > 0)
            return delta > self._deadbands.get(name, 0.0)
        return value != last or type(value) is not type(last)


def _is_number(v: Value) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
