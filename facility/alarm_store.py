"""Alarm lifecycle in the database, shared by the rules service and the API (psycopg async).

ISA-18.2 states: ``unack`` (active, unacknowledged), ``ack`` (active, acknowledged),
``rtn_unack`` (returned to normal, unacknowledged), ``normal`` (closed). Acknowledging moves
unack -> ack and rtn_unack -> normal; clearing moves unack -> rtn_unack and ack -> normal.
Every transition writes an ``alarm_events`` row with its actor and time, inside the caller's
transaction (or its own). Functions return the ``AlarmEvent`` messages to publish on
facility/v1/{site}/alarms once the transaction has committed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.messages import AlarmEvent

ALARM_STATES = ("unack", "ack", "rtn_unack", "normal")


class AlarmError(Exception):
    """A refused alarm operation; the API maps it to an HTTP error."""

    def __init__(self, alarm_id: int, reason: str) -> None:
        self.alarm_id = alarm_id
        self.reason = reason
        super().__init__(f"alarm {alarm_id}: {reason}")


class AlarmNotFound(AlarmError):
    def __init__(self, alarm_id: int) -> None:
        super().__init__(alarm_id, "no such alarm")


class AlarmStateError(AlarmError):
    def __init__(self, alarm_id: int, state: str, action: str) -> None:
        self.state = state
        self.action = action
        super().__init__(alarm_id, f"cannot {action} an alarm in state {state}")


async def add_event(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, event: str, actor: str, now: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO alarm_events (alarm_id, time, event, actor, detail)"
        " VALUES (%s, %s, %s, %s, %s)",
        (alarm_id, now, event, actor, Jsonb(detail or {})),
    )


def message(
    event: str, now: datetime, *, alarm_id: int, source: str, alarm_type: str, state: str,
    priority: str, work_order_id: int | None = None, detail: dict[str, Any] | None = None,
) -> AlarmEvent:
    """The MQTT message of one alarm or work-order event (``alarm.raised``, ...)."""
    return AlarmEvent(ts=now, event=event, alarm_id=alarm_id, work_order_id=work_order_id,
                      device=source, alarm_type=alarm_type, state=state, priority=priority,
                      detail=detail or {})


async def acknowledge(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, actor: str, now: datetime
) -> list[AlarmEvent]:
    """An operator acknowledges: unack -> ack, rtn_unack -> normal (closed).

    AlarmNotFound for no such alarm; AlarmStateError when it is already acknowledged or closed."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT state, source, alarm_type, priority FROM alarms WHERE id = %s FOR UPDATE",
            (alarm_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise AlarmNotFound(alarm_id)
        state, source, alarm_type, priority = row
        if state not in ("unack", "rtn_unack"):
            raise AlarmStateError(alarm_id, state, "acknowledge")
        new = "ack" if state == "unack" else "normal"
        await conn.execute(
            "UPDATE alarms SET state = %s, acked_at = %s, acked_by = %s,"
            " closed_at = CASE WHEN %s = 'normal' THEN %s ELSE closed_at END WHERE id = %s",
            (new, now, actor, new, now, alarm_id),
        )
        await add_event(conn, alarm_id, "acknowledged", actor, now, {"from": state, "to": new})
        events = ["acknowledged"]
        if new == "normal":
            await add_event(conn, alarm_id, "closed", actor, now)
            events.append("closed")
    return [message(f"alarm.{e}", now, alarm_id=alarm_id, source=source, alarm_type=alarm_type,
                    state=new, priority=priority, detail={"actor": actor}) for e in events]
