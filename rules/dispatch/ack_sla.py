"""The acknowledgement SLA of an alarm as a pure function of (clock, policy, acknowledged,
now); no I/O, never reads the clock.

An alarm raised unacknowledged must be acknowledged by ``ack_due_at`` (raised + the
acknowledge time of its procedure, or of its priority when it has no work order). Past it,
escalation level *i* of the policy fires at ``ack_due_at + after_i`` (the roster's next
person, then the supervisor, ...); once the levels are used up, everyone told is reminded
every ``renotify_every``. Deadlines passed together (the service was down) fire together, in
order; missed reminders are coalesced into one. An acknowledged alarm has nothing left."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rules.dispatch.alerting import AckPolicy


@dataclass(frozen=True, slots=True)
class AckClock:
    """The persisted timer of one alarm (table alarm_timers)."""

    alarm_id: int
    ack_due_at: datetime
    level: int = 0
    renotified: int = 0


@dataclass(frozen=True, slots=True)
class AckEscalate:
    level: int  # 1-based
    notify: str  # next, supervisor or a roster
    deadline: datetime


@dataclass(frozen=True, slots=True)
class AckRenotify:
    count: int
    deadline: datetime


AckAction = AckEscalate | AckRenotify


@dataclass(frozen=True, slots=True)
class AckDecision:
    clock: AckClock
    actions: tuple[AckAction, ...] = ()
    due_at: datetime | None = None


def level_due(clock: AckClock, policy: AckPolicy, index: int) -> datetime:
    return clock.ack_due_at + timedelta(seconds=policy.levels[index].after_s)


def evaluate_ack(clock: AckClock, policy: AckPolicy, acknowledged: bool, now: datetime
                 ) -> AckDecision:
    """What is due for this alarm at ``now``, and when to look again."""
    if acknowledged:
        return AckDecision(clock)
    actions: list[AckAction] = []
    level, renotified = clock.level, clock.renotified
    while level < len(policy.levels) and now >= level_due(clock, policy, level):
        actions.append(AckEscalate(level + 1, policy.levels[level].notify,
                                   level_due(clock, policy, level)))
        level += 1
    if level < len(policy.levels):
        due = level_due(clock, policy, level)
    else:
        base = level_due(clock, policy, len(policy.levels) - 1)
        step = timedelta(seconds=policy.renotify_every_s)
        if now >= base + step * (renotified + 1):
            renotified = math.floor((now - base) / step)
            actions.append(AckRenotify(renotified, base + step * renotified))
        due = base + step * (renotified + 1)
    return AckDecision(replace(clock, level=level, renotified=renotified), tuple(actions), due)
