"""SLA timers and escalation as a pure function of (clock, policy, work-order state, now).

Every deadline counts from the time the order was opened. Until someone accepts it:
the accept SLA is breached at ``opened + accept``; escalation level *i* of the procedure's
chain fires at ``opened + max(accept, after_i)`` (so nobody is escalated before the accept
SLA has passed), each naming a role whose on-call person is told; once the chain is used up
everyone told so far is re-notified every ``renotify`` until someone accepts. Arrive and
resolve SLAs are breached once each if the order is not on site / resolved by then. Several
deadlines passed at once (the service was down) fire together, in order; missed
re-notifications are coalesced into one. ``evaluate`` returns the actions, the new clock and
the next deadline (None: nothing left to watch); the scheduler only calls it when due."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from facility.procedures import Procedure
from rules.dispatch.config import Escalation

ACCEPTED = frozenset({"accepted", "on_site", "resolved", "closed"})
ARRIVED = frozenset({"on_site", "resolved", "closed"})
RESOLVED = frozenset({"resolved", "closed"})
FINISHED = frozenset({"closed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Level:
    after_s: float
    role: str
    note: str = ""
    note_en: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    accept_s: float
    arrive_s: float
    resolve_s: float
    chain: tuple[Level, ...]
    renotify_s: float

    def level_due(self, opened_at: datetime, index: int) -> datetime:
        return opened_at + timedelta(seconds=max(self.accept_s, self.chain[index].after_s))


def policy_for(procedure: Procedure, escalation: Escalation) -> Policy:
    """The procedure's SLAs and chain; a procedure without a chain escalates to the default
    role when the accept SLA passes."""
    sla = procedure.sla
    chain = tuple(Level(e.after_s, e.role, e.note, e.note_en) for e in procedure.escalation)
    if not chain:
        chain = (Level(sla.accept_s, escalation.default_role),)
    return Policy(sla.accept_s, sla.arrive_s, sla.resolve_s, chain,
                  escalation.renotify_every_s or sla.accept_s)


@dataclass(frozen=True, slots=True)
class Clock:
    """The persisted timer of one work order (table dispatch_timers)."""

    work_order_id: int
    opened_at: datetime
    level: int = 0
    renotified: int = 0
    breached: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Breach:
    sla: str  # accept, arrive, resolve
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Escalate:
    level: int  # 1-based
    role: str
    note: str
    note_en: str
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Renotify:
    count: int
    deadline: datetime


SlaAction = Breach | Escalate | Renotify


@dataclass(frozen=True, slots=True)
class Decision:
    clock: Clock
    actions: tuple[SlaAction, ...] = ()
    due_at: datetime | None = None


def evaluate(clock: Clock, policy: Policy, state: str, now: datetime) -> Decision:
    """What is due for this work order at ``now``, and when to look again."""
    if state in FINISHED:
        return Decision(clock)
    opened = clock.opened_at
    actions: list[SlaAction] = []
    breached = set(clock.breached)
    level, renotified = clock.level, clock.renotified
    candidates: list[datetime] = []

    def breach(sla: str, limit_s: float, done: frozenset[str]) -> None:
        if state in done or sla in breached:
            return
        deadline = opened + timedelta(seconds=limit_s)
        if now >= deadline:
            actions.append(Breach(sla, deadline))
            breached.add(sla)
        else:
            candidates.append(deadline)

    breach("accept", policy.accept_s, ACCEPTED)
    if state not in ACCEPTED:
        while level < len(policy.chain) and now >= policy.level_due(opened, level):
            lv = policy.chain[level]
            actions.append(Escalate(level + 1, lv.role, lv.note, lv.note_en,
                                    policy.level_due(opened, level)))
            level += 1
        if level < len(policy.chain):
            candidates.append(policy.level_due(opened, level))
        else:
            base = policy.level_due(opened, len(policy.chain) - 1)
            step = timedelta(seconds=policy.renotify_s)
            next_at = base + step * (renotified + 1)
            if now >= next_at:
                renotified = math.floor((now - base) / step)
                actions.append(Renotify(renotified, base + step * renotified))
            candidates.append(base + step * (renotified + 1))
    breach("arrive", policy.arrive_s, ARRIVED)
    breach("resolve", policy.resolve_s, RESOLVED)
    new = replace(clock, level=level, renotified=renotified, breached=frozenset(breached))
    return Decision(new, tuple(actions), min(candidates) if candidates else None)
