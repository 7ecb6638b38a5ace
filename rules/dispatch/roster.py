"""Who is on call: a pure function of the rosters and ``now`` (no I/O, never reads the clock).

A shift covers the days of the week on which it starts (ISO weekday, in the dispatch file's
time zone, Asia/Shanghai by default) from ``start`` to ``end``; an ``end`` at or before
``start`` runs past midnight into the next day. ``on_call`` lists everyone on call for a
roster now, shift order first (primary first within a shift), then the roster's backups;
``assignee`` is the first of them. A shift swap (``config.swaps``) puts its substitute in the
original's place while it lasts. A daylight-saving gap or fold is resolved the way
``zoneinfo`` does (fold 0)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from rules.dispatch.config import DispatchConfig, Roster, Shift


@dataclass(frozen=True, slots=True)
class OnCall:
    username: str
    roster: str
    shift: str  # shift name, or "backup"
    since: datetime | None = None  # the shift's window (UTC); None for a backup
    until: datetime | None = None


def shift_window(shift: Shift, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The window (UTC) of this shift that contains ``now``, or None."""
    local = now.astimezone(tz)
    # The shift may have started today, or (overnight) yesterday.
    for back in (0, 1):
        day = (local - timedelta(days=back)).date()
        if day.isoweekday() not in shift.days:
            continue
        start = datetime.combine(day, shift.start, tzinfo=tz)
        end_day = day + timedelta(days=1) if shift.overnight else day
        end = datetime.combine(end_day, shift.end, tzinfo=tz)
        if start <= local < end:
            return start.astimezone(UTC), end.astimezone(UTC)
    return None


def on_call(config: DispatchConfig, roster_name: str, now: datetime) -> list[OnCall]:
    """Everyone on call for a roster now, in the order to try them; [] for no such roster."""
    roster: Roster | None = config.rosters.get(roster_name)
    if roster is None:
        return []
    out: list[OnCall] = []
    seen: set[str] = set()
    for shift in roster.shifts:
        window = shift_window(shift, now, config.tz)
        if window is None:
            continue
        for original in shift.on_call:
            user = swapped(config, roster_name, original, now)
            if user not in seen:
                seen.add(user)
                name = shift.name if user == original else f"{shift.name} (swap for {original})"
                out.append(OnCall(user, roster_name, name, *window))
    for user in roster.backup:
        if user not in seen:
            seen.add(user)
            out.append(OnCall(user, roster_name, "backup"))
    return out


def swapped(config: DispatchConfig, roster_name: str, username: str, now: datetime) -> str:
    """Who stands in for ``username`` on this roster now (a shift swap), else themselves."""
    for swap in config.swaps:
        if (swap.roster == roster_name and swap.original == username
                and swap.starts_at <= now < swap.ends_at):
            return swap.substitute
    return username


def assignee(config: DispatchConfig, roster_name: str, now: datetime) -> OnCall | None:
    """The person to give an order of this roster to now: the on-call primary, else a backup."""
    people = on_call(config, roster_name, now)
    return people[0] if people else None
