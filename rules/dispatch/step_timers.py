"""Step timers of work orders (psycopg async), run by the dispatcher's sweep.

A step with a time limit has its clock started when its order is raised or accepted (the
procedure says which: ``rules.work_orders`` and ``facility.workorders.transition`` write
``started_at`` and ``due_at``). ``escalate_overdue`` takes every step of the site's open orders
that is past ``due_at`` and not done (``FOR UPDATE SKIP LOCKED``), marks it ``overdue_at`` (so
it escalates once) and records a ``step_overdue`` work-order event, a
``work_order.step_overdue`` outbox event and an ``audit_log`` row, and tells the assignee and
the supervisor on call, loudly (SMS, then a call unless the step is ticked in time)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.events import record
from facility.messages import AlarmEvent
from facility.workorders import add_event
from rules.dispatch.channels import Notice
from rules.dispatch.notify import enqueue
from rules.dispatch.orders import Context
from rules.dispatch.roster import assignee

log = logging.getLogger(__name__)
ACTOR = "dispatch"

_DUE = """
SELECT s.work_order_id, s.seq, s.role, s.action, s.action_en, s.time_limit_s, s.clock,
       s.started_at, s.due_at, w.title, w.source, w.priority, w.state, w.assignee, w.alarm_id,
       w.fault, w.trade
FROM work_order_steps s JOIN work_orders w ON w.id = s.work_order_id
WHERE w.site_id = %s AND s.due_at <= %s AND s.done_at IS NULL AND s.overdue_at IS NULL
  AND w.state NOT IN ('resolved', 'closed', 'cancelled')
ORDER BY s.due_at LIMIT %s
FOR UPDATE OF s SKIP LOCKED
"""


async def escalate_overdue(conn: psycopg.AsyncConnection[Any], ctx: Context, now: datetime,
                           limit: int = 100) -> list[AlarmEvent]:
    """Escalate every step that ran out of time; returns the events to publish."""
    cur = await conn.execute(_DUE, (ctx.site_id, now, limit))
    events = []
    for row in await cur.fetchall():
        events.append(await _escalate(conn, ctx, row, now))
    return events


async def _escalate(conn: psycopg.AsyncConnection[Any], ctx: Context, row: tuple[Any, ...],
                    now: datetime) -> AlarmEvent:
    (wo_id, seq, role, action, action_en, limit_s, clock, started_at, due_at, title, source,
     priority, state, person, alarm_id, fault, trade) = row
    cfg = ctx.dispatch.config
    sup = assignee(cfg, cfg.escalation.supervisor_role, now)
    detail: dict[str, Any] = {
        "seq": seq, "role": role, "action_en": action_en, "time_limit_s": limit_s,
        "clock": clock, "started_at": started_at.isoformat(), "due_at": due_at.isoformat(),
        "late_s": round((now - due_at).total_seconds()), "assignee": person,
        "supervisor": sup.username if sup else None}
    await conn.execute("UPDATE work_order_steps SET overdue_at = %s WHERE work_order_id = %s"
                       " AND seq = %s", (now, wo_id, seq))
    await add_event(conn, wo_id, "step_overdue", ACTOR, now, detail=detail)
    ev = AlarmEvent(ts=now, event="work_order.step_overdue", work_order_id=wo_id,
                    alarm_id=alarm_id, device=source, alarm_type=fault, state=state,
                    priority=priority, detail=detail)
    await record(conn, ctx.site_id, [ev])
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, outcome, detail)"
        " VALUES (%s, %s, 'work_order.step_overdue', %s, 'success', %s)",
        (now, ACTOR, f"work_order:{wo_id}", Jsonb(detail)))
    line = f"步骤 Step {seq} ({role}) 超时 overdue: {action} / {action_en}"
    notice = Notice("step_overdue", ctx.site_id, wo_id, title, source, priority, state, now,
                    ctx.people(person, sup.username if sup else None), line, alarm_id=alarm_id)
    await enqueue(conn, cfg, notice, ctx.channels(trade), cancel_when="step_done",
                  step_seq=seq)
    log.warning("work order %d: step %d (%s) ran out of time at %s: escalated to %s",
                wo_id, seq, role, due_at.isoformat(), sup.username if sup else "nobody")
    return ev
