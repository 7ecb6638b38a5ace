"""Report-on-change with deadbands, plus a periodic full snapshot; pure, no I/O, no clock.

``ReportState`` remembers, per device, the last value *sent* for each point (so a slow drift
is reported once it has moved a deadband from what consumers last saw, not lost in steps
smaller than the deadband) and when the last full snapshot went out. ``decide`` takes one
poll's values and bad points and the current monotonic time, and says what to send: the
changed points, or every point when a report period has passed, or nothing. A number
changes when it moves more than its absolute deadband; a bool or a string on any change;
a point turning bad, or good again, is always a change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from facility.messages import Quality, Value


@dataclass(frozen=True, slots=True)
class Report:
    points: dict[str, Value]
    quality: dict[str, Quality]
    full: bool


class ReportState:
    def __init__(self, deadbands: Mapping[str, float], report_period_s: float) -> None:
        self._deadbands = dict(deadbands)
        self._period_s = report_period_s
        self._sent: dict[str, Value] = {}
        self._bad: set[str] = set()
        self._last_full: float | None = None

    def decide(self, values: Mapping[str, Value], bad: frozenset[str] | set[str], now: float
               ) -> Report | None:
        """What to publish for this poll (None: nothing), and remember it as sent."""
        if self._last_full is None or now - self._last_full >= self._period_s:
            return self._full(values, bad, now)
        changed = {n: v for n, v in values.items() if self._changed(n, v)}
        newly_bad = set(bad) - self._bad
        if not changed and not newly_bad:
            return None
        quality: dict[str, Quality] = {n: "good" for n in changed}
        quality.update({n: "bad" for n in newly_bad})
        self._sent.update(changed)
        self._bad = (self._bad | newly_bad) - changed.keys()
        return Report(points=changed, quality=quality, full=False)

    def _full(self, values: Mapping[str, Value], bad: frozenset[str] | set[str], now: float
              ) -> Report:
        self._last_full = now
        self._sent.update(values)
        self._bad = set(bad) - values.keys()
        quality: dict[str, Quality] = {n: "good" for n in values}
        quality.update({n: "bad" for n in self._bad})
        return Report(points=dict(values), quality=quality, full=True)

    def _changed(self, name: str, value: Value) -> bool:
        if name in self._bad or name not in self._sent:
            return True
        last = self._sent[name]
        if _is_number(value) and _is_number(last):
            return abs(float(value) - float(last)) > self._deadbands.get(name, 0.0)
        return value != last or type(value) is not type(last)


def _is_number(v: Value) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
