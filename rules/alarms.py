"""Raising and clearing alarms in the database for the rules service (psycopg async).

Raising is one ``INSERT ... ON CONFLICT`` on the partial unique index ``alarms_one_open``
(one alarm per source and type not yet normal), so two rules instances can never open two:
a new alarm is inserted ``unack``/active with a ``raised`` event; an alarm still open is a
repeat (``repeat_count`` + 1, active again, rtn_unack -> unack, a ``repeat`` event).
Clearing makes it inactive: unack -> rtn_unack, ack -> normal (closed). The actor is
``rules``. Acknowledging belongs to operators: facility.alarm_store.acknowledge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.alarm_store import add_event, message
from facility.messages import AlarmEvent
from rules.engine import ClearAlarm, RaiseAlarm

ACTOR = "rules"

_RAISE = """
INSERT INTO alarms (site_id, device_id, source, alarm_type, rule_id, priority, state, active,
                    message, detail, raised_at)
VALUES (%(site)s, %(device_id)s, %(source)s, %(type)s, %(rule)s, %(priority)s, 'unack', true,
        %(message)s, %(detail)s, %(now)s)
ON CONFLICT (source, alarm_type) WHERE state <> 'normal' DO UPDATE SET
    active = true,
    state = CASE WHEN alarms.state = 'rtn_unack' THEN 'unack' ELSE alarms.state END,
    repeat_count = alarms.repeat_count + 1,
    cleared_at = NULL,
    message = EXCLUDED.message,
    detail = EXCLUDED.detail
RETURNING id, state, (xmax = 0) AS inserted, repeat_count
"""

_CLEAR = """
UPDATE alarms SET active = false, cleared_at = %(now)s,
    state = CASE WHEN state = 'ack' THEN 'normal' ELSE 'rtn_unack' END,
    closed_at = CASE WHEN state = 'ack' THEN %(now)s ELSE closed_at END
WHERE source = %(source)s AND alarm_type = %(type)s AND state <> 'normal' AND active
RETURNING id, state, priority
"""


@dataclass(frozen=True, slots=True)
class RaisedAlarm:
    id: int
    state: str
    inserted: bool
    repeat_count: int


async def raise_alarm(
    conn: psycopg.AsyncConnection[Any], site_id: str, device_id: int | None, act: RaiseAlarm
) -> tuple[RaisedAlarm, list[AlarmEvent]]:
    """Open the alarm, or count a repeat on the one still open."""
    async with conn.transaction():
        cur = await conn.execute(_RAISE, {
            "site": site_id, "device_id": device_id, "source": act.source,
            "type": act.alarm_type, "rule": act.rule_id, "priority": act.priority,
            "message": act.message, "detail": Jsonb(dict(act.detail)), "now": act.at,
        })
        row = await cur.fetchone()
        assert row is not None
        alarm = RaisedAlarm(*row)
        event = "raised" if alarm.inserted else "repeat"
        await add_event(conn, alarm.id, event, ACTOR, act.at,
                        {"rule": act.rule_id, "message": act.message,
                         "repeat_count": alarm.repeat_count})
    msg = message(f"alarm.{event}", act.at, alarm_id=alarm.id, source=act.source,
                  alarm_type=act.alarm_type, state=alarm.state, priority=act.priority,
                  detail={"message": act.message, **dict(act.detail)})
    return alarm, [msg]


async def clear_alarm(
    conn: psycopg.AsyncConnection[Any], act: ClearAlarm
) -> list[AlarmEvent]:
    """Return the open, active alarm to normal; nothing when there is none."""
    async with conn.transaction():
        cur = await conn.execute(_CLEAR, {"now": act.at, "source": act.source,
                                          "type": act.alarm_type})
        row = await cur.fetchone()
        if row is None:
            return []
        alarm_id, state, priority = row
        await add_event(conn, alarm_id, "cleared", ACTOR, act.at, {"rule": act.rule_id})
        events = ["cleared"]
        if state == "normal":
            await add_event(conn, alarm_id, "closed", ACTOR, act.at)
            events.append("closed")
    return [message(f"alarm.{e}", act.at, alarm_id=alarm_id, source=act.source,
                    alarm_type=act.alarm_type, state=state, priority=priority) for e in events]
