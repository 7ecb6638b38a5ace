"""Raising, clearing and grouping alarms in the database for the rules service (psycopg async).

Raising is one ``INSERT ... ON CONFLICT`` on the partial unique index ``alarms_one_open``
(one alarm per source and type not yet normal), so two rules instances can never open two:
a new alarm is inserted ``unack``/active with a ``raised`` event (``suppressed`` when the
engine names an active parent: grouped under it, event ``suppressed``); it inherits the
point's shelve and out-of-service (``alarm_controls``). An alarm still open is a repeat
(``repeat_count`` + 1, active again, rtn_unack -> unack, a ``repeat`` event). Clearing makes
it inactive: unack -> rtn_unack, ack -> normal (closed); an alarm nobody was asked to see
(suppressed or out of service) closes at once. ``group`` and ``ungroup`` attach a parent's
children after the fact and release them when the parent clears. ``record_historical``
stores a replayed fault that is already over as a closed alarm, once. The actor is ``rules``;
every function returns the ``AlarmEvent``s, which the service records in the outbox in the
same transaction and publishes after the commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.alarm_store import add_event, message
from facility.messages import AlarmEvent
from rules.engine_types import ClearAlarm, GroupAlarms, RaiseAlarm, UngroupAlarms, UpdateAlarm
from rules.history import HistoricalAlarm

ACTOR = "rules"
GROUP_GRACE = timedelta(seconds=60)  # a child raised this long before its parent's cause

_RAISE = """
INSERT INTO alarms (site_id, device_id, source, alarm_type, rule_id, priority, state, active,
                    message, detail, raised_at, suppressed, parent_alarm_id, shelved_until,
                    out_of_service)
SELECT %(site)s, %(device_id)s, %(source)s, %(type)s, %(rule)s, %(priority)s, 'unack', true,
       %(message)s, %(detail)s, %(now)s, %(suppressed)s, %(parent)s,
       (SELECT c.shelved_until FROM alarm_controls c WHERE c.source = %(source)s
          AND c.alarm_type = %(type)s AND c.shelved_until > %(now)s),
       COALESCE((SELECT c.out_of_service FROM alarm_controls c WHERE c.source = %(source)s
          AND c.alarm_type = %(type)s), false)
ON CONFLICT (source, alarm_type) WHERE state <> 'normal' DO UPDATE SET
    active = true,
    state = CASE WHEN alarms.state = 'rtn_unack' THEN 'unack' ELSE alarms.state END,
    repeat_count = alarms.repeat_count + 1,
    cleared_at = NULL,
    message = EXCLUDED.message,
    detail = EXCLUDED.detail
RETURNING id, state, (xmax = 0) AS inserted, repeat_count, suppressed, out_of_service,
          shelved_until, work_order_id
"""

_CLEAR = """
UPDATE alarms SET active = false, cleared_at = %(now)s,
    state = CASE WHEN state = 'ack' OR suppressed OR out_of_service THEN 'normal'
                 ELSE 'rtn_unack' END,
    closed_at = CASE WHEN state = 'ack' OR suppressed OR out_of_service THEN %(now)s
                     ELSE closed_at END
WHERE source = %(source)s AND alarm_type = %(type)s AND state <> 'normal' AND active
RETURNING id, state, priority, suppressed, out_of_service, shelved_until
"""


@dataclass(frozen=True, slots=True)
class RaisedAlarm:
    id: int
    state: str
    inserted: bool
    repeat_count: int
    suppressed: bool = False
    out_of_service: bool = False
    shelved_until: datetime | None = None
    work_order_id: int | None = None

    def annunciated(self, now: datetime) -> bool:
        shelved = self.shelved_until is not None and self.shelved_until > now
        return not (self.suppressed or self.out_of_service or shelved)

    @property
    def wants_work_order(self) -> bool:
        """Suppressed and out-of-service alarms get no work order of their own."""
        return not (self.suppressed or self.out_of_service)


def _chatter(detail: Any) -> dict[str, Any]:
    """The chattering flag, count and last time of an alarm's detail, for its events."""
    if not detail.get("chattering"):
        return {}
    return {k: detail[k] for k in ("chattering", "occurrences", "last_at") if k in detail}


async def _open_alarm_id(
    conn: psycopg.AsyncConnection[Any], source: str, alarm_type: str
) -> int | None:
    cur = await conn.execute(
        "SELECT id FROM alarms WHERE source = %s AND alarm_type = %s AND state <> 'normal'",
        (source, alarm_type))
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def raise_alarm(
    conn: psycopg.AsyncConnection[Any], site_id: str, device_id: int | None, act: RaiseAlarm
) -> tuple[RaisedAlarm, list[AlarmEvent]]:
    """Open the alarm, or count a repeat on the one still open."""
    async with conn.transaction():
        parent = None
        if act.suppressed_by is not None:
            parent = await _open_alarm_id(conn, *act.suppressed_by)
        cur = await conn.execute(_RAISE, {
            "site": site_id, "device_id": device_id, "source": act.source,
            "type": act.alarm_type, "rule": act.rule_id, "priority": act.priority,
            "message": act.message, "detail": Jsonb(dict(act.detail)), "now": act.at,
            "suppressed": parent is not None, "parent": parent,
        })
        row = await cur.fetchone()
        assert row is not None
        alarm = RaisedAlarm(*row)
        event = "repeat" if not alarm.inserted else "suppressed" if alarm.suppressed else "raised"
        detail: dict[str, Any] = {"rule": act.rule_id, "message": act.message,
                                  "repeat_count": alarm.repeat_count, **_chatter(act.detail)}
        if alarm.suppressed and parent is not None:
            detail["parent_alarm_id"] = parent
        await add_event(conn, alarm.id, event, ACTOR, act.at, detail)
    msg = message(f"alarm.{event}", act.at, alarm_id=alarm.id, source=act.source,
                  alarm_type=act.alarm_type, state=alarm.state, priority=act.priority,
                  detail={**detail, **dict(act.detail),
                          "annunciate": alarm.annunciated(act.at)})
    return alarm, [msg]


async def update_alarm(
    conn: psycopg.AsyncConnection[Any], act: UpdateAlarm
) -> list[AlarmEvent]:
    """New message and detail on the open, active alarm (the points it names changed); its
    state, repeat count and annunciation stay as they are. Nothing when there is none."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE alarms SET message = %s, detail = %s WHERE source = %s"
            " AND alarm_type = %s AND state <> 'normal' AND active"
            " RETURNING id, state, priority, suppressed, out_of_service, shelved_until",
            (act.message, Jsonb(dict(act.detail)), act.source, act.alarm_type))
        row = await cur.fetchone()
        if row is None:
            return []
        alarm_id, state, priority, suppressed, oos, shelved_until = row
        detail: dict[str, Any] = {"rule": act.rule_id, "message": act.message,
                                  **_chatter(act.detail)}
        if "points" in act.detail:
            detail["points"] = list(act.detail["points"])
        await add_event(conn, alarm_id, "updated", ACTOR, act.at, detail)
    shelved = shelved_until is not None and shelved_until > act.at
    return [message("alarm.updated", act.at, alarm_id=alarm_id, source=act.source,
                    alarm_type=act.alarm_type, state=state, priority=priority,
                    detail={**detail, **dict(act.detail),
                            "annunciate": not (suppressed or oos or shelved)})]


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
        alarm_id, state, priority, suppressed, oos, shelved_until = row
        await add_event(conn, alarm_id, "cleared", ACTOR, act.at, {"rule": act.rule_id})
        events = ["cleared"]
        if state == "normal":
            await add_event(conn, alarm_id, "closed", ACTOR, act.at)
            events.append("closed")
    shelved = shelved_until is not None and shelved_until > act.at
    detail = {"annunciate": not (suppressed or oos or shelved)}
    return [message(f"alarm.{e}", act.at, alarm_id=alarm_id, source=act.source,
                    alarm_type=act.alarm_type, state=state, priority=priority, detail=detail)
            for e in events]


async def group(conn: psycopg.AsyncConnection[Any], act: GroupAlarms) -> list[AlarmEvent]:
    """Group the children's open, active alarms raised since the parent's cause began (less
    ``GROUP_GRACE``) under the parent alarm: suppressed from now on."""
    if not act.children:
        return []
    async with conn.transaction():
        parent = await _open_alarm_id(conn, *act.parent)
        if parent is None:
            return []
        cur = await conn.execute(
            "UPDATE alarms SET suppressed = true, parent_alarm_id = %(parent)s"
            " WHERE (source, alarm_type) IN (SELECT * FROM unnest(%(sources)s::text[],"
            " %(types)s::text[])) AND state <> 'normal' AND active AND NOT suppressed"
            " AND raised_at >= %(since)s"
            " RETURNING id, source, alarm_type, state, priority",
            {"parent": parent, "sources": [c[0] for c in act.children],
             "types": [c[1] for c in act.children], "since": act.since - GROUP_GRACE})
        rows = await cur.fetchall()
        for r in rows:
            await add_event(conn, r[0], "grouped", ACTOR, act.at, {"parent_alarm_id": parent})
    return [message("alarm.grouped", act.at, alarm_id=r[0], source=r[1], alarm_type=r[2],
                    state=r[3], priority=r[4],
                    detail={"parent_alarm_id": parent, "annunciate": False}) for r in rows]


async def ungroup(conn: psycopg.AsyncConnection[Any], act: UngroupAlarms) -> list[AlarmEvent]:
    """The parent cleared: its children still active annunciate again (their work orders
    follow from the service's reconcile); the ones over stay recorded as suppressed."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE alarms SET suppressed = false WHERE parent_alarm_id = (SELECT id FROM alarms"
            " WHERE source = %s AND alarm_type = %s ORDER BY id DESC LIMIT 1)"
            " AND suppressed AND active AND state <> 'normal'"
            " RETURNING id, source, alarm_type, state, priority, parent_alarm_id", act.parent)
        rows = await cur.fetchall()
        for r in rows:
            await add_event(conn, r[0], "unsuppressed", ACTOR, act.at,
                            {"parent_alarm_id": r[5]})
    return [message("alarm.unsuppressed", act.at, alarm_id=r[0], source=r[1], alarm_type=r[2],
                    state=r[3], priority=r[4],
                    detail={"parent_alarm_id": r[5], "annunciate": True}) for r in rows]


async def record_historical(
    conn: psycopg.AsyncConnection[Any], site_id: str, device_id: int | None,
    item: HistoricalAlarm,
) -> tuple[int | None, list[AlarmEvent]]:
    """Store a replayed fault that is already over as a closed alarm (once: a redelivered
    replay finds it recorded and returns no id); its id and events."""
    act, cleared = item.raised, item.cleared_at
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO alarms (site_id, device_id, source, alarm_type, rule_id, priority,"
            " state, active, message, detail, raised_at, cleared_at, closed_at, historical,"
            " suppressed) VALUES (%s, %s, %s, %s, %s, %s, 'normal', false, %s, %s, %s, %s, %s,"
            " true, %s) ON CONFLICT (source, alarm_type, raised_at) WHERE historical"
            " DO NOTHING RETURNING id",
            (site_id, device_id, act.source, act.alarm_type, act.rule_id, act.priority,
             act.message, Jsonb({**dict(act.detail), "historical": True}), act.at, cleared,
             cleared, act.suppressed_by is not None))
        row = await cur.fetchone()
        if row is None:
            return None, []
        alarm_id = int(row[0])
        for event, at in (("raised", act.at), ("cleared", cleared), ("closed", cleared)):
            await add_event(conn, alarm_id, event, ACTOR, at, {"historical": True})
    return alarm_id, [message(
        "alarm.historical", cleared, alarm_id=alarm_id, source=act.source,
        alarm_type=act.alarm_type, state="normal", priority=act.priority,
        detail={"raised_at": act.at.isoformat(), "cleared_at": cleared.isoformat(),
                "message": act.message, "annunciate": False})]
