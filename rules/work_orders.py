"""Work orders opened by alarms (psycopg async).

An alarm whose rule names a procedure opens one work order (origin ``alarm``, state
``open``) carrying the procedure's steps as its checklist, with a ``created`` event and a due
time from the procedure's resolve SLA. The partial unique index ``work_orders_one_open``
(one open order per source and fault) makes this race-free: while one is open, a repeat is
linked to it with a ``linked_repeat`` event instead of a second order. The alarm records the
order it opened or was linked to (``alarms.work_order_id``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from facility.messages import AlarmEvent
from facility.procedures import Procedure
from facility.workorders import add_event

ACTOR = "rules"
_OPEN_STATES_SQL = "state NOT IN ('resolved', 'closed', 'cancelled')"

_INSERT = f"""
INSERT INTO work_orders (site_id, device_id, source, fault, origin, alarm_id, procedure_id,
                         title, description, trade, priority, state, created_at, updated_at,
                         due_at, after_the_fact)
VALUES (%(site)s, %(device_id)s, %(source)s, %(fault)s, 'alarm', %(alarm_id)s, %(proc)s,
        %(title)s, %(description)s, %(trade)s, %(priority)s, 'open', %(now)s, %(now)s, %(due)s,
        %(after_the_fact)s)
ON CONFLICT (source, fault) WHERE origin = 'alarm' AND {_OPEN_STATES_SQL} DO NOTHING
RETURNING id
"""
_STEP = (
    "INSERT INTO work_order_steps (work_order_id, seq, role, action, action_en, time_limit_s,"
    " required, clock, started_at, due_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


async def open_for_alarm(
    conn: psycopg.AsyncConnection[Any], *, site_id: str, device_id: int | None, source: str,
    fault: str, alarm_id: int, procedure: Procedure, description: str, now: datetime,
    after_the_fact: bool = False,
) -> list[AlarmEvent]:
    """Open the alarm's work order, or link the alarm to the one already open.
    ``after_the_fact``: a follow-up of a fault that was over before anyone could see it
    (it began and ended while its gateway was cut off); the order says so."""
    title = f"{procedure.title}: {source}"
    if after_the_fact:
        title = f"[事后发现 found after the fact] {title}"
    params = {
        "site": site_id, "device_id": device_id, "source": source, "fault": fault,
        "alarm_id": alarm_id, "proc": procedure.id, "now": now, "after_the_fact": after_the_fact,
        "title": title, "description": description,
        "trade": procedure.trade, "priority": procedure.priority,
        "due": now + timedelta(seconds=procedure.sla.resolve_s),
    }
    async with conn.transaction():
        for _ in range(3):  # the open order may be resolved between our two statements
            cur = await conn.execute(_INSERT, params)
            row = await cur.fetchone()
            if row is not None:
                await _link(conn, alarm_id, row[0])
                return [await _created(conn, row[0], procedure, params)]
            cur = await conn.execute(
                "SELECT id, state FROM work_orders WHERE source = %s AND fault = %s"
                f" AND origin = 'alarm' AND {_OPEN_STATES_SQL} FOR UPDATE", (source, fault),
            )
            found = await cur.fetchone()
            if found is not None:
                wo_id, state = found
                await _link(conn, alarm_id, wo_id)
                await add_event(conn, wo_id, "linked_repeat", ACTOR, now,
                                detail={"alarm_id": alarm_id})
                return [_message("linked_repeat", wo_id, state, params)]
    raise RuntimeError(f"could not open or find the work order of {source}/{fault}")


async def _link(conn: psycopg.AsyncConnection[Any], alarm_id: int, wo_id: int) -> None:
    await conn.execute("UPDATE alarms SET work_order_id = %s WHERE id = %s", (wo_id, alarm_id))


async def _created(
    conn: psycopg.AsyncConnection[Any], wo_id: int, procedure: Procedure, params: dict[str, Any]
) -> AlarmEvent:
    now: datetime = params["now"]
    rows = []
    for seq, s in enumerate(procedure.steps, start=1):
        clock = procedure.clock_of(s)
        # a step timed from the alarm starts its clock now; the others when accepted
        started = now if s.time_limit_s is not None and clock == "raised" else None
        due = None if started is None else started + timedelta(seconds=s.time_limit_s or 0)
        rows.append((wo_id, seq, s.role, s.action, s.action_en,
                     None if s.time_limit_s is None else round(s.time_limit_s), s.required,
                     clock, started, due))
    async with conn.cursor() as cur:
        await cur.executemany(_STEP, rows)
    await add_event(conn, wo_id, "created", ACTOR, params["now"], None, "open",
                    {"alarm_id": params["alarm_id"], "procedure": procedure.id})
    return _message("created", wo_id, "open", params)


def _message(event: str, wo_id: int, state: str, params: dict[str, Any]) -> AlarmEvent:
    return AlarmEvent(ts=params["now"], event=f"work_order.{event}", work_order_id=wo_id,
                      alarm_id=params["alarm_id"], device=params["source"],
                      alarm_type=params["fault"], state=state, priority=params["priority"],
                      detail={"procedure": params["proc"], "title": params["title"],
                              **({"after_the_fact": True} if params["after_the_fact"] else {})})
