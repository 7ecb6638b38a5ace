"""Work-order lifecycle, shared by the rules service and the API.

The allowed transitions are a pure table (``TRANSITIONS``: (from, to) -> event name):
open -> assigned -> accepted -> on_site -> resolved -> closed, with cancel from any state
before resolved, a technician taking an open order directly, reassigning, declining back to
open, and reopening a resolved order. ``transition`` applies one in the database (psycopg
async), refusing a forbidden one with ``TransitionForbidden`` and a resolve with required
steps left with ``StepsIncomplete``; accepting starts the timers of the steps timed from
acceptance (``work_order_steps.started_at``/``due_at``); ``complete_step`` ticks a checklist
step. Each writes a ``work_order_events`` row with actor and time, records the event in the
event outbox (facility.events.record) in the same transaction, and returns the ``AlarmEvent``
for an MQTT publisher (callers must not record it again)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility import events as outbox
from facility.messages import AlarmEvent


class WoState(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


S = WoState
TERMINAL = frozenset({S.CLOSED, S.CANCELLED})
TRANSITIONS: Mapping[tuple[WoState, WoState], str] = {
    (S.OPEN, S.ASSIGNED): "assigned",
    (S.OPEN, S.ACCEPTED): "accepted",  # a technician takes an unassigned order himself
    (S.ASSIGNED, S.ASSIGNED): "reassigned",
    (S.ASSIGNED, S.ACCEPTED): "accepted",
    (S.ASSIGNED, S.OPEN): "declined",
    (S.ACCEPTED, S.ON_SITE): "arrived",
    (S.ON_SITE, S.RESOLVED): "resolved",
    (S.RESOLVED, S.CLOSED): "closed",
    (S.RESOLVED, S.ON_SITE): "reopened",
    **{(s, S.CANCELLED): "cancelled" for s in (S.OPEN, S.ASSIGNED, S.ACCEPTED, S.ON_SITE)},
}


class WorkOrderError(Exception):
    """A refused work-order operation; the API maps it to an HTTP error."""

    def __init__(self, work_order_id: int, reason: str) -> None:
        self.work_order_id = work_order_id
        self.reason = reason
        super().__init__(f"work order {work_order_id}: {reason}")


class WorkOrderNotFound(WorkOrderError):
    def __init__(self, work_order_id: int) -> None:
        super().__init__(work_order_id, "no such work order")


class TransitionForbidden(WorkOrderError):
    def __init__(self, work_order_id: int, from_state: str, to_state: str) -> None:
        self.from_state = from_state
        self.to_state = to_state
        allowed = ", ".join(next_states(from_state)) or "none"
        super().__init__(work_order_id, f"cannot go from {from_state} to {to_state}"
                                        f" (allowed: {allowed})")


class StepsIncomplete(WorkOrderError):
    def __init__(self, work_order_id: int, steps: tuple[int, ...]) -> None:
        self.steps = steps
        super().__init__(work_order_id, "required steps not done: "
                                        + ", ".join(str(s) for s in steps))


class AssigneeRequired(WorkOrderError):
    def __init__(self, work_order_id: int) -> None:
        super().__init__(work_order_id, "assigning needs an assignee")


class StepNotFound(WorkOrderError):
    def __init__(self, work_order_id: int, seq: int) -> None:
        self.seq = seq
        super().__init__(work_order_id, f"no step {seq}")


def next_states(from_state: str) -> tuple[str, ...]:
    return tuple(str(to) for (fr, to) in TRANSITIONS if fr == from_state)


def event_for(work_order_id: int, from_state: str, to_state: str) -> str:
    """The event name of an allowed transition; TransitionForbidden otherwise."""
    try:
        return TRANSITIONS[(WoState(from_state), WoState(to_state))]
    except (KeyError, ValueError):
        raise TransitionForbidden(work_order_id, from_state, to_state) from None


async def add_event(
    conn: psycopg.AsyncConnection[Any], work_order_id: int, event: str, actor: str,
    now: datetime, from_state: str | None = None, to_state: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO work_order_events (work_order_id, time, event, actor, from_state, to_state,"
        " detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (work_order_id, now, event, actor, from_state, to_state, Jsonb(detail or {})),
    )


async def _locked(conn: psycopg.AsyncConnection[Any], wo_id: int) -> tuple[Any, ...]:
    cur = await conn.execute(
        "SELECT state, assignee, source, fault, priority, alarm_id, site_id FROM work_orders"
        " WHERE id = %s FOR UPDATE", (wo_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise WorkOrderNotFound(wo_id)
    return tuple(row)


async def transition(
    conn: psycopg.AsyncConnection[Any], wo_id: int, to_state: str, actor: str, *,
    now: datetime, assignee: str | None = None, note: str = "",
) -> AlarmEvent:
    """Move a work order to ``to_state``; returns the event message to publish."""
    async with conn.transaction():
        state, current, source, fault, priority, alarm_id, site_id = await _locked(conn, wo_id)
        event = event_for(wo_id, state, to_state)
        if to_state == S.ASSIGNED and not assignee:
            raise AssigneeRequired(wo_id)
        if to_state == S.RESOLVED:
            cur = await conn.execute(
                "SELECT seq FROM work_order_steps WHERE work_order_id = %s AND required"
                " AND done_at IS NULL ORDER BY seq", (wo_id,),
            )
            missing = tuple(r[0] for r in await cur.fetchall())
            if missing:
                raise StepsIncomplete(wo_id, missing)
        if to_state == S.ACCEPTED:
            assignee = assignee or current or actor
        elif to_state == S.OPEN:
            assignee = None
        else:
            assignee = assignee or current
        await conn.execute(
            "UPDATE work_orders SET state = %(to)s, assignee = %(assignee)s, updated_at = %(now)s,"
            " resolved_at = CASE WHEN %(to)s = 'resolved' THEN %(now)s"
            "   WHEN %(to)s = 'on_site' THEN NULL ELSE resolved_at END,"
            " closed_at = CASE WHEN %(to)s IN ('closed', 'cancelled') THEN %(now)s"
            "   ELSE closed_at END WHERE id = %(id)s",
            {"to": to_state, "assignee": assignee, "now": now, "id": wo_id},
        )
        if to_state == S.ACCEPTED:  # the step timers that count from acceptance start
            await conn.execute(
                "UPDATE work_order_steps SET started_at = %(now)s,"
                " due_at = %(now)s + time_limit_s * interval '1 second'"
                " WHERE work_order_id = %(id)s AND clock = 'accepted' AND time_limit_s IS NOT"
                " NULL AND started_at IS NULL AND done_at IS NULL", {"now": now, "id": wo_id})
        detail = {"actor": actor, "assignee": assignee, **({"note": note} if note else {})}
        await add_event(conn, wo_id, event, actor, now, state, to_state, detail)
        msg = AlarmEvent(ts=now, event=f"work_order.{event}", work_order_id=wo_id,
                         alarm_id=alarm_id, device=source, alarm_type=fault, state=to_state,
                         priority=priority, detail={**detail, "from_state": state})
        await outbox.record(conn, site_id, [msg])
    return msg


async def complete_step(
    conn: psycopg.AsyncConnection[Any], wo_id: int, seq: int, actor: str, *, now: datetime,
    note: str = "",
) -> AlarmEvent | None:
    """Tick a checklist step (open orders only); None when it was already done."""
    async with conn.transaction():
        state, _assignee, source, fault, priority, alarm_id, site_id = await _locked(conn, wo_id)
        if state in (S.RESOLVED, *TERMINAL):
            raise WorkOrderError(wo_id, f"steps cannot change in state {state}")
        cur = await conn.execute(
            "UPDATE work_order_steps SET done_at = %s, done_by = %s, note = %s"
            " WHERE work_order_id = %s AND seq = %s AND done_at IS NULL RETURNING seq",
            (now, actor, note, wo_id, seq),
        )
        if await cur.fetchone() is None:
            cur = await conn.execute(
                "SELECT 1 FROM work_order_steps WHERE work_order_id = %s AND seq = %s",
                (wo_id, seq),
            )
            if await cur.fetchone() is None:
                raise StepNotFound(wo_id, seq)
            return None
        await add_event(conn, wo_id, "step_done", actor, now, detail={"seq": seq, "note": note})
        msg = AlarmEvent(ts=now, event="work_order.step_done", work_order_id=wo_id,
                         alarm_id=alarm_id, device=source, alarm_type=fault, state=state,
                         priority=priority, detail={"seq": seq, "actor": actor})
        await outbox.record(conn, site_id, [msg])
    return msg
