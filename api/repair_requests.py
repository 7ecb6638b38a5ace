"""Opening a work order from an owner's repair request (业主报修): origin ``request``, state
``open``, the named procedure's steps as its checklist (or one generic step), a due time from
the procedure's resolve SLA or the priority's default, a ``created`` event with the desk
user as actor, and the event recorded in the outbox, all in one transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api.errors import ApiError, NotFound
from api.work_order_models import RepairRequestIn
from facility import events
from facility.messages import AlarmEvent
from facility.workorders import add_event

DEFAULT_PROCEDURE = "owner_repair_request"
RESOLVE_BY_PRIORITY = {"critical": timedelta(hours=2), "high": timedelta(hours=8),
                       "medium": timedelta(hours=24), "low": timedelta(hours=72)}
GENERIC_STEP = {
    "role": "technician",
    "action": "到场检查并处理报修问题，向业主说明处理结果。",  # noqa: RUF001
    "action_en": "Inspect and fix the reported problem; tell the owner the outcome.",
    "time_limit_s": None, "required": True,
}


async def _procedure(
    conn: psycopg.AsyncConnection[Any], procedure_id: str | None
) -> tuple[str | None, dict[str, Any]]:
    cur = await conn.execute("SELECT id, body FROM procedures WHERE id = %s",
                             (procedure_id or DEFAULT_PROCEDURE,))
    row = await cur.fetchone()
    if row is None and procedure_id is not None:
        raise NotFound("procedure", procedure_id)
    return (row[0], dict(row[1])) if row else (None, {})


async def _device(
    conn: psycopg.AsyncConnection[Any], body: RepairRequestIn
) -> tuple[int | None, str]:
    cur = await conn.execute("SELECT 1 FROM sites WHERE id = %s", (body.site,))
    if await cur.fetchone() is None:
        raise NotFound("site", body.site)
    if body.device is None:
        return None, "desk"
    cur = await conn.execute("SELECT id, site_id FROM devices WHERE name = %s", (body.device,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("device", body.device)
    if row[1] != body.site:
        raise ApiError(f"device {body.device} is not on site {body.site}")
    return int(row[0]), body.device


async def open_request(
    conn: psycopg.AsyncConnection[Any], body: RepairRequestIn, actor: str, now: datetime
) -> int:
    """Insert the order with its steps and events; returns its id."""
    async with conn.transaction():
        device_id, source = await _device(conn, body)
        proc_id, proc = await _procedure(conn, body.procedure_id)
        resolve_s = proc.get("sla", {}).get("resolve_s")
        due = now + (timedelta(seconds=resolve_s) if resolve_s
                     else RESOLVE_BY_PRIORITY[body.priority])
        requester = {"name": body.reporter_name, "phone": body.reporter_phone,
                     "location": body.location, "building": body.building, "taken_by": actor}
        cur = await conn.execute(
            "INSERT INTO work_orders (site_id, device_id, source, fault, origin, procedure_id,"
            " title, description, trade, priority, state, created_at, updated_at, due_at,"
            " requester) VALUES (%s, %s, %s, %s, 'request', %s, %s, %s, %s, %s, 'open', %s,"
            " %s, %s, %s) RETURNING id",
            (body.site, device_id, source, body.category, proc_id, body.title,
             body.description, body.trade, body.priority, now, now, due, Jsonb(requester)),
        )
        row = await cur.fetchone()
        assert row is not None
        wo_id = int(row[0])
        steps = proc.get("steps") or [GENERIC_STEP]
        async with conn.cursor() as c:
            await c.executemany(
                "INSERT INTO work_order_steps (work_order_id, seq, role, action, action_en,"
                " time_limit_s, required, clock, started_at, due_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [_step_row(wo_id, seq, s, proc.get("step_clock") or "accepted", now)
                 for seq, s in enumerate(steps, start=1)],
            )
        await add_event(conn, wo_id, "created", actor, now, None, "open",
                        {"origin": "request", "procedure": proc_id, **requester})
        await events.record(conn, body.site, [AlarmEvent(
            ts=now, event="work_order.created", work_order_id=wo_id, device=source,
            alarm_type=body.category, state="open", priority=body.priority,
            detail={"title": body.title, "origin": "request", "trade": body.trade})])
    return wo_id


def _step_row(wo_id: int, seq: int, step: dict[str, Any], step_clock: str, now: datetime
              ) -> tuple[Any, ...]:
    """A step's row; a step timed from the order's raising starts its clock now."""
    limit = step.get("time_limit_s")
    clock = step.get("clock") or step_clock
    started = now if limit is not None and clock == "raised" else None
    due = None if started is None else started + timedelta(seconds=float(limit or 0))
    return (wo_id, seq, step["role"], step["action"], step.get("action_en", ""),
            None if limit is None else round(limit), step.get("required", True), clock,
            started, due)
