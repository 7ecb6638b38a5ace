"""Alarm lifecycle in the database, shared by the rules service and the API (psycopg async).

ISA-18.2 states: ``unack`` (active, unacknowledged), ``ack`` (active, acknowledged),
``rtn_unack`` (returned to normal, unacknowledged), ``normal`` (closed). Acknowledging moves
unack -> ack and rtn_unack -> normal; clearing moves unack -> rtn_unack and ack -> normal.
Besides the state, an alarm point (source, alarm_type) can be *shelved* until an expiry or
taken *out of service* by an operator (table ``alarm_controls``; a new alarm of the point
inherits both), and an alarm can be *suppressed by design* under a parent alarm (set by the
rules service). Shelved, out-of-service and suppressed alarms are recorded and evaluated but
not annunciated: their events carry ``detail.annunciate = false``.

Every operator function here writes an ``alarm_events`` row with actor, time and comment AND
records the event in the event outbox (facility.events.record) in the same transaction, then
returns the ``AlarmEvent`` messages for an MQTT publisher. Callers must not record them
again. Refusals are ``AlarmError`` subclasses carrying the alarm id and the reason."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility import events as outbox
from facility.messages import AlarmEvent

ALARM_STATES = ("unack", "ack", "rtn_unack", "normal")
MAX_SHELVE = timedelta(hours=72)


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


class InvalidShelve(AlarmError):
    """A shelve expiry in the past or beyond ``MAX_SHELVE``."""

    def __init__(self, alarm_id: int, until: datetime, reason: str) -> None:
        self.until = until
        super().__init__(alarm_id, reason)


class CommentRequired(AlarmError):
    def __init__(self, alarm_id: int, action: str) -> None:
        self.action = action
        super().__init__(alarm_id, f"{action} needs a comment saying why")


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


_LOCK = """
SELECT state, source, alarm_type, priority, site_id, active, shelved_until, out_of_service,
       suppressed
FROM alarms WHERE id = %s FOR UPDATE
"""


class _Row:
    """The locked alarm row an operator function works on."""

    def __init__(self, alarm_id: int, row: tuple[Any, ...]) -> None:
        self.id = alarm_id
        (self.state, self.source, self.alarm_type, self.priority, self.site_id, self.active,
         self.shelved_until, self.out_of_service, self.suppressed) = row

    def annunciated(self, now: datetime) -> bool:
        shelved = self.shelved_until is not None and self.shelved_until > now
        return not (shelved or self.out_of_service or self.suppressed)

    def event(self, name: str, now: datetime, detail: dict[str, Any]) -> AlarmEvent:
        return message(f"alarm.{name}", now, alarm_id=self.id, source=self.source,
                       alarm_type=self.alarm_type, state=self.state, priority=self.priority,
                       detail={**detail, "annunciate": self.annunciated(now)})


async def _locked(conn: psycopg.AsyncConnection[Any], alarm_id: int) -> _Row:
    cur = await conn.execute(_LOCK, (alarm_id,))
    row = await cur.fetchone()
    if row is None:
        raise AlarmNotFound(alarm_id)
    return _Row(alarm_id, tuple(row))


async def _emit(
    conn: psycopg.AsyncConnection[Any], row: _Row, names: list[str], actor: str,
    now: datetime, detail: dict[str, Any],
) -> list[AlarmEvent]:
    """alarm_events rows and outbox events for each name, in the caller's transaction."""
    msgs = []
    for name in names:
        await add_event(conn, row.id, name, actor, now, detail)
        msgs.append(row.event(name, now, {"actor": actor, **detail}))
    await outbox.record(conn, row.site_id, msgs)
    return msgs


async def acknowledge(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, actor: str, now: datetime,
    comment: str = "",
) -> list[AlarmEvent]:
    """An operator acknowledges: unack -> ack, rtn_unack -> normal (closed).

    AlarmNotFound for no such alarm; AlarmStateError when it is already acknowledged or closed."""
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        if row.state not in ("unack", "rtn_unack"):
            raise AlarmStateError(alarm_id, row.state, "acknowledge")
        old, row.state = row.state, "ack" if row.state == "unack" else "normal"
        await conn.execute(
            "UPDATE alarms SET state = %s, acked_at = %s, acked_by = %s,"
            " closed_at = CASE WHEN %s = 'normal' THEN %s ELSE closed_at END WHERE id = %s",
            (row.state, now, actor, row.state, now, alarm_id),
        )
        detail: dict[str, Any] = {"from": old, "to": row.state}
        if comment:
            detail["comment"] = comment
        names = ["acknowledged"] + (["closed"] if row.state == "normal" else [])
        return await _emit(conn, row, names, actor, now, detail)


async def _control(
    conn: psycopg.AsyncConnection[Any], row: _Row, now: datetime, **values: Any
) -> None:
    """Upsert the alarm point's controls (only the given columns change)."""
    cols = ", ".join(values)
    marks = ", ".join(f"%({c})s" for c in values)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
    await conn.execute(
        f"INSERT INTO alarm_controls (source, alarm_type, site_id, updated_at, {cols})"
        f" VALUES (%(source)s, %(type)s, %(site)s, %(now)s, {marks})"
        f" ON CONFLICT (source, alarm_type) DO UPDATE SET updated_at = EXCLUDED.updated_at,"
        f" {sets}",
        {"source": row.source, "type": row.alarm_type, "site": row.site_id, "now": now,
         **values},
    )


async def shelve(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, actor: str, now: datetime, *,
    until: datetime, comment: str,
) -> list[AlarmEvent]:
    """Shelve an alarm (not yet normal) until ``until`` (at most ``MAX_SHELVE`` ahead); a
    shelved alarm is not annunciated, and neither is a new alarm of the same point before the
    expiry. Shelving again moves the expiry. The rules service unshelves at the expiry
    (``unshelve_expired``). InvalidShelve, CommentRequired, AlarmStateError (normal)."""
    if not comment.strip():
        raise CommentRequired(alarm_id, "shelving")
    if until <= now or until - now > MAX_SHELVE:
        raise InvalidShelve(alarm_id, until, f"a shelve must end after now and within "
                                             f"{MAX_SHELVE.total_seconds() / 3600:.0f} h")
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        if row.state == "normal":
            raise AlarmStateError(alarm_id, row.state, "shelve")
        await conn.execute("UPDATE alarms SET shelved_until = %s WHERE id = %s", (until, alarm_id))
        await _control(conn, row, now, shelved_until=until, shelved_by=actor, comment=comment)
        row.shelved_until = until
        return await _emit(conn, row, ["shelved"], actor, now,
                           {"until": until.isoformat(), "comment": comment})


async def unshelve(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, actor: str, now: datetime, *,
    comment: str = "",
) -> list[AlarmEvent]:
    """End a shelve before its expiry; AlarmStateError when the alarm is not shelved."""
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        if row.shelved_until is None or row.shelved_until <= now:
            raise AlarmStateError(alarm_id, row.state if row.shelved_until is None
                                  else "shelve expired", "unshelve")
        return await _unshelve(conn, row, actor, now, comment)


async def _unshelve(
    conn: psycopg.AsyncConnection[Any], row: _Row, actor: str, now: datetime, comment: str
) -> list[AlarmEvent]:
    await conn.execute("UPDATE alarms SET shelved_until = NULL WHERE id = %s", (row.id,))
    await _control(conn, row, now, shelved_until=None, shelved_by=None)
    row.shelved_until = None
    detail = {"comment": comment} if comment else {}
    return await _emit(conn, row, ["unshelved"], actor, now, {**detail, "active": row.active})


async def unshelve_expired(
    conn: psycopg.AsyncConnection[Any], now: datetime, *, site_id: str | None = None,
    actor: str = "rules",
) -> list[AlarmEvent]:
    """Unshelve every alarm (of the site, or all) whose shelve has expired by ``now``; the
    rules service calls this on its tick, and an alarm still active then annunciates again.
    Expired shelves of points with no open alarm are forgotten too."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE alarm_controls SET shelved_until = NULL, shelved_by = NULL, updated_at = %s"
            " WHERE shelved_until <= %s AND (%s::text IS NULL OR site_id = %s)",
            (now, now, site_id, site_id))
        await conn.execute(  # closed alarms: nothing to annunciate again
            "UPDATE alarms SET shelved_until = NULL WHERE shelved_until <= %s"
            " AND state = 'normal' AND (%s::text IS NULL OR site_id = %s)",
            (now, site_id, site_id))
        cur = await conn.execute(
            "SELECT id FROM alarms WHERE shelved_until IS NOT NULL AND shelved_until <= %s"
            " AND (%s::text IS NULL OR site_id = %s) ORDER BY id FOR UPDATE SKIP LOCKED",
            (now, site_id, site_id))
        rows = [await _locked(conn, r[0]) for r in await cur.fetchall()]
        if not rows:
            return []
        await conn.execute("UPDATE alarms SET shelved_until = NULL WHERE id = ANY(%s)",
                           ([r.id for r in rows],))
        msgs: list[AlarmEvent] = []
        for row in rows:
            row.shelved_until = None
            detail = {"comment": "shelve expired", "active": row.active}
            await add_event(conn, row.id, "unshelved", actor, now, detail)
            msgs.append(row.event("unshelved", now, {"actor": actor, **detail}))
        for site, group in _by_site(rows, msgs).items():
            await outbox.record(conn, site, group)
    return msgs


def _by_site(rows: list[_Row], msgs: list[AlarmEvent]) -> dict[str, list[AlarmEvent]]:
    out: dict[str, list[AlarmEvent]] = {}
    for row, msg in zip(rows, msgs, strict=True):
        out.setdefault(row.site_id, []).append(msg)
    return out


async def remove_from_service(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, actor: str, now: datetime, *,
    comment: str,
) -> list[AlarmEvent]:
    """Take the alarm's point out of service (maintenance): its alarms, this one and new
    ones, are recorded but neither annunciated nor given work orders until
    ``return_to_service``. Any state. CommentRequired, AlarmStateError (already)."""
    if not comment.strip():
        raise CommentRequired(alarm_id, "taking out of service")
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        if row.out_of_service:
            raise AlarmStateError(alarm_id, "out_of_service", "take out of service")
        await conn.execute("UPDATE alarms SET out_of_service = true WHERE id = %s", (alarm_id,))
        await _control(conn, row, now, out_of_service=True, oos_by=actor, comment=comment)
        row.out_of_service = True
        return await _emit(conn, row, ["out_of_service"], actor, now, {"comment": comment})


async def return_to_service(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, actor: str, now: datetime, *,
    comment: str = "",
) -> list[AlarmEvent]:
    """Put the alarm's point back in service; AlarmStateError when it is in service."""
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        cur = await conn.execute(
            "SELECT out_of_service FROM alarm_controls WHERE source = %s AND alarm_type = %s",
            (row.source, row.alarm_type))
        ctl = await cur.fetchone()
        if not row.out_of_service and not (ctl and ctl[0]):
            raise AlarmStateError(alarm_id, "in_service", "return to service")
        await conn.execute(
            "UPDATE alarms SET out_of_service = false WHERE source = %s AND alarm_type = %s"
            " AND (id = %s OR state <> 'normal')", (row.source, row.alarm_type, alarm_id))
        await _control(conn, row, now, out_of_service=False, oos_by=None)
        row.out_of_service = False
        detail = {"comment": comment} if comment else {}
        return await _emit(conn, row, ["returned_to_service"], actor, now,
                           {**detail, "active": row.active})
