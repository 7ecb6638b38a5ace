"""When preventive maintenance is due: pure functions of the schedule, the last occurrence
recorded and ``now`` (no I/O, never reads the clock).

A calendar schedule (``every: 15d | 1w | 1mo | 3mo | 6mo | 1y`` from ``start``) has
occurrence *k* for the period starting on ``start + k * every`` (local date, in the dispatch
file's time zone; a month-end start is clamped, e.g. Jan 31 + 1mo = Feb 28). Its work order
opens ``lead`` before the period starts and is due when the next period starts: the work is
done in its period. ``calendar_due`` gives the occurrence to open now (the latest that has
opened) and those skipped since the last one recorded (the service was down; they count as
missed). A run-hours schedule opens an order each time a pump's run-hours counter crosses a
multiple of ``every`` hours; the first reading is only a baseline, and a counter that went
back (pump replaced) becomes the new baseline."""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_MISSED = 24


@dataclass(frozen=True, slots=True)
class Occurrence:
    key: str  # the period's first day, ISO
    open_at: datetime  # UTC
    due_at: datetime  # UTC


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def period_start(start: date, n: int, unit: str, k: int) -> date:
    if unit == "d":
        return start + timedelta(days=n * k)
    if unit == "w":
        return start + timedelta(weeks=n * k)
    months = n * k * (12 if unit == "y" else 1)
    return add_months(start, months)


def occurrence(start: date, n: int, unit: str, k: int, lead: timedelta, tz: ZoneInfo
               ) -> Occurrence:
    first = period_start(start, n, unit, k)
    nxt = period_start(start, n, unit, k + 1)
    begin = datetime.combine(first, time(), tzinfo=tz).astimezone(UTC)
    return Occurrence(first.isoformat(), begin - lead,
                      datetime.combine(nxt, time(), tzinfo=tz).astimezone(UTC))


def _approx_days(n: int, unit: str) -> float:
    return n * {"d": 1.0, "w": 7.0, "mo": 30.44, "y": 365.25}[unit]


def current_index(start: date, n: int, unit: str, lead: timedelta, tz: ZoneInfo,
                  now: datetime) -> int | None:
    """The largest k whose order has opened by ``now``; None before the first."""
    def opened(k: int) -> bool:
        return occurrence(start, n, unit, k, lead, tz).open_at <= now

    if not opened(0):
        return None
    local_days = (now.astimezone(tz).date() - start).days + lead.total_seconds() / 86400
    k = max(0, math.floor(local_days / _approx_days(n, unit)))
    while k > 0 and not opened(k):
        k -= 1
    while opened(k + 1):
        k += 1
    return k


def calendar_due(start: date, n: int, unit: str, lead: timedelta, tz: ZoneInfo,
                 now: datetime, last_key: str | None
                 ) -> tuple[Occurrence | None, list[Occurrence]]:
    """(the occurrence to open now or None, occurrences missed since ``last_key``)."""
    k = current_index(start, n, unit, lead, tz, now)
    if k is None:
        return None, []
    current = occurrence(start, n, unit, k, lead, tz)
    if last_key is not None and last_key >= current.key:
        return None, []
    missed: list[Occurrence] = []
    if last_key is not None:
        j = k - 1
        while j >= 0 and len(missed) < MAX_MISSED:
            occ = occurrence(start, n, unit, j, lead, tz)
            if occ.key <= last_key:
                break
            missed.append(occ)
            j -= 1
        missed.reverse()
    return current, missed


def run_hours_due(every_h: float, last_h: float | None, hours: float) -> float | None:
    """The multiple of ``every_h`` crossed since ``last_h``, or None."""
    if last_h is None or hours <= last_h:
        return None
    crossed = math.floor(hours / every_h)
    if crossed > math.floor(last_h / every_h) and crossed > 0:
        return crossed * every_h
    return None
