"""Alarms: list with filters, one alarm with its event history, and the operator's actions:
acknowledge, shelve (with an expiry), unshelve (operator or admin), take out of service and
return to service (manager or admin). Every action takes a comment (shelving and taking out of
service need one) and is done by facility.alarm_store (shared with rules/), which also records
it in the event outbox in the same transaction. Listed by need of attention: not yet normal
first, then active, then by priority, newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Acknowledger, Authoriser, Conn, CurrentUser
from api.routes.devices import ID_PATTERN
from api.rows import fetch_one, from_row
from api.scoping import check_alarm, where
from facility import alarm_store
from facility.users import User

router = APIRouter(tags=["alarms"])
AlarmState = Literal["unack", "ack", "rtn_unack", "normal"]
Priority = Literal["critical", "high", "medium", "low"]
AlarmId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_SHELVE = timedelta(hours=72)


class AlarmOut(BaseModel):
    id: int
    site: str
    device: str | None
    source: str
    type: str
    rule_id: str
    priority: str
    state: AlarmState
    active: bool
    suppressed: bool
    shelved_until: datetime | None
    out_of_service: bool
    message: str
    raised_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    cleared_at: datetime | None
    closed_at: datetime | None
    repeat_count: int
    building: str | None
    trade: str = Field(description="the trade of the device: elevator, plumbing, electrical,"
                       " fire or general")
    ack_due_at: datetime | None = Field(
        default=None, description="when it must be acknowledged by (its acknowledgement SLA)")
    ack_overdue: bool = Field(default=False, description="unacknowledged past ack_due_at")
    escalation_level: int = Field(default=0, description="escalation levels fired so far")
    message_en: str = Field(default="",
                            description="the message in English ('' if the rule has none)")


class AlarmEventOut(BaseModel):
    time: datetime
    event: str
    actor: str
    detail: dict[str, Any]


class AlarmDetail(AlarmOut):
    events: list[AlarmEventOut]


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class ShelveIn(Comment):
    minutes: int = Field(ge=1, le=int(MAX_SHELVE.total_seconds() // 60),
                         description="how long to shelve, at most 72 hours")


_SELECT = """
SELECT a.id, a.site_id, d.name, a.source, a.alarm_type, a.rule_id, a.priority, a.state,
       a.active, a.suppressed, a.shelved_until, a.out_of_service, a.message,
       a.raised_at, a.acked_at, a.acked_by, a.cleared_at, a.closed_at, a.repeat_count,
       d.building,
       CASE d.type WHEN 'elevator' THEN 'elevator' WHEN 'pump_set' THEN 'plumbing'
                   WHEN 'switchgear' THEN 'electrical' WHEN 'fire_panel' THEN 'fire'
                   ELSE 'general' END,
       t.ack_due_at, COALESCE(a.state = 'unack' AND t.ack_due_at < now(), false),
       COALESCE(t.level, 0),
       coalesce(a.detail ->> 'message_en', '')
FROM alarms a LEFT JOIN devices d ON d.id = a.device_id
LEFT JOIN alarm_timers t ON t.alarm_id = a.id
"""
_ORDER = """
ORDER BY a.state = 'normal', a.active DESC,
         CASE a.priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2
                         WHEN 'low' THEN 3 ELSE 4 END,
         a.raised_at DESC, a.id DESC
LIMIT %(limit)s
"""
_WHERE = """
WHERE (%(states)s::text[] IS NULL OR a.state = ANY(%(states)s))
  AND (%(active)s::boolean IS NULL OR a.active = %(active)s)
  AND (%(prios)s::text[] IS NULL OR a.priority = ANY(%(prios)s))
  AND (%(site)s::text IS NULL OR a.site_id = %(site)s)
  AND (%(device)s::text IS NULL OR d.name = %(device)s)
  AND (%(building)s::text IS NULL OR d.building = %(building)s)
  AND (%(type)s::text IS NULL OR a.alarm_type = %(type)s)
  AND (%(shelved)s::boolean IS NULL
       OR (a.shelved_until IS NOT NULL AND a.shelved_until > now()) = %(shelved)s)
"""


async def _one(conn: psycopg.AsyncConnection[Any], alarm_id: int) -> AlarmOut:
    return await fetch_one(conn, AlarmOut, _SELECT + " WHERE a.id = %s", (alarm_id,), "alarm",
                           alarm_id)


async def _visible(conn: psycopg.AsyncConnection[Any], user: User, alarm_id: int) -> AlarmOut:
    """The alarm, or NotFound if it is not in the user's scope."""
    await check_alarm(conn, user, alarm_id)
    return await _one(conn, alarm_id)


@router.get("/alarms", response_model=list[AlarmOut])
async def list_alarms(
    conn: Conn,
    user: CurrentUser,
    state: Annotated[list[AlarmState] | None, Query()] = None,
    active: bool | None = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    device: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    building: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    type: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    shelved: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlarmOut]:
    params = {"states": state, "active": active, "prios": priority, "site": site,
              "device": device, "building": building, "type": type, "shelved": shelved,
              "limit": limit}
    cond, scope_params = where(user, "a.site_id", "d.building")
    cur = await conn.execute(_SELECT + _WHERE + " AND " + cond + _ORDER,
                             {**params, **scope_params})
    return [from_row(AlarmOut, row) for row in await cur.fetchall()]


@router.get("/alarms/{alarm_id}", response_model=AlarmDetail, responses={404: {}})
async def get_alarm(conn: Conn, user: CurrentUser, alarm_id: AlarmId) -> AlarmDetail:
    alarm = await _visible(conn, user, alarm_id)
    cur = await conn.execute(
        "SELECT time, event, actor, detail FROM alarm_events WHERE alarm_id = %s"
        " ORDER BY time, id", (alarm_id,),
    )
    history = [AlarmEventOut(time=r[0], event=r[1], actor=r[2], detail=r[3])
               for r in await cur.fetchall()]
    return AlarmDetail(**alarm.model_dump(), events=history)


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "not allowed in the alarm's state"}}


@router.post("/alarms/{alarm_id}/acknowledge", response_model=AlarmOut,
             responses={403: {}, 404: {}, **_CONFLICT})
async def acknowledge_alarm(
    conn: Conn, user: Acknowledger, alarm_id: AlarmId, body: Comment | None = None
) -> AlarmOut:
    await check_alarm(conn, user, alarm_id)
    await alarm_store.acknowledge(conn, alarm_id, user.username, datetime.now(UTC),
                                  body.comment if body else "")
    return await _one(conn, alarm_id)


@router.post("/alarms/{alarm_id}/shelve", response_model=AlarmOut,
             responses={403: {}, 404: {}, **_CONFLICT})
async def shelve_alarm(
    conn: Conn, user: Acknowledger, alarm_id: AlarmId, body: ShelveIn
) -> AlarmOut:
    """Shelve for ``minutes`` (a comment saying why is required)."""
    await check_alarm(conn, user, alarm_id)
    now = datetime.now(UTC)
    await alarm_store.shelve(conn, alarm_id, user.username, now,
                             until=now + timedelta(minutes=body.minutes), comment=body.comment)
    return await _one(conn, alarm_id)


@router.post("/alarms/{alarm_id}/unshelve", response_model=AlarmOut,
             responses={403: {}, 404: {}, **_CONFLICT})
async def unshelve_alarm(
    conn: Conn, user: Acknowledger, alarm_id: AlarmId, body: Comment | None = None
) -> AlarmOut:
    await check_alarm(conn, user, alarm_id)
    await alarm_store.unshelve(conn, alarm_id, user.username, datetime.now(UTC),
                               comment=body.comment if body else "")
    return await _one(conn, alarm_id)


@router.post("/alarms/{alarm_id}/out-of-service", response_model=AlarmOut,
             responses={403: {}, 404: {}, **_CONFLICT})
async def remove_from_service(
    conn: Conn, user: Authoriser, alarm_id: AlarmId, body: Comment
) -> AlarmOut:
    """Take the alarm's point out of service (a comment saying why is required)."""
    await check_alarm(conn, user, alarm_id)
    await alarm_store.remove_from_service(conn, alarm_id, user.username, datetime.now(UTC),
                                          comment=body.comment)
    return await _one(conn, alarm_id)


@router.post("/alarms/{alarm_id}/return-to-service", response_model=AlarmOut,
             responses={403: {}, 404: {}, **_CONFLICT})
async def return_to_service(
    conn: Conn, user: Authoriser, alarm_id: AlarmId, body: Comment | None = None
) -> AlarmOut:
    await check_alarm(conn, user, alarm_id)
    await alarm_store.return_to_service(conn, alarm_id, user.username, datetime.now(UTC),
                                        comment=body.comment if body else "")
    return await _one(conn, alarm_id)
