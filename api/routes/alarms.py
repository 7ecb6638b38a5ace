"""GET /alarms (filter by state and active) and POST /alarms/{id}/acknowledge (operator or
admin; the transition itself is facility.alarm_store.acknowledge, shared with rules/).
Listed by need of attention: not yet normal first, then active, then by
priority, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.deps import Acknowledger, Conn, CurrentUser
from api.errors import NotFound
from facility.alarm_store import acknowledge

router = APIRouter(tags=["alarms"])
AlarmState = Literal["unack", "ack", "rtn_unack", "normal"]
AlarmId = Annotated[int, Path(ge=1, le=2**63 - 1)]


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
    message: str
    raised_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    cleared_at: datetime | None
    closed_at: datetime | None
    repeat_count: int


_SELECT = """
SELECT a.id, a.site_id, d.name, a.source, a.alarm_type, a.rule_id, a.priority, a.state,
       a.active, a.suppressed, a.message, a.raised_at, a.acked_at, a.acked_by, a.cleared_at,
       a.closed_at, a.repeat_count
FROM alarms a LEFT JOIN devices d ON d.id = a.device_id
"""
_ORDER = """
ORDER BY a.state = 'normal', a.active DESC,
         CASE a.priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2
                         WHEN 'low' THEN 3 ELSE 4 END,
         a.raised_at DESC
LIMIT %(limit)s
"""
_FIELDS = tuple(AlarmOut.model_fields)


def _alarm(row: tuple[Any, ...]) -> AlarmOut:
    return AlarmOut.model_validate(dict(zip(_FIELDS, row, strict=True)))


async def _one(conn: psycopg.AsyncConnection[Any], alarm_id: int) -> AlarmOut:
    cur = await conn.execute(_SELECT + " WHERE a.id = %s", (alarm_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("alarm", alarm_id)
    return _alarm(row)


@router.get("/alarms", response_model=list[AlarmOut])
async def list_alarms(
    conn: Conn,
    user: CurrentUser,
    state: Annotated[list[AlarmState] | None, Query()] = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlarmOut]:
    where = (
        " WHERE (%(states)s::text[] IS NULL OR a.state = ANY(%(states)s))"
        " AND (%(active)s::boolean IS NULL OR a.active = %(active)s)"
    )
    cur = await conn.execute(
        _SELECT + where + _ORDER, {"states": state, "active": active, "limit": limit}
    )
    return [_alarm(row) for row in await cur.fetchall()]


@router.get("/alarms/{alarm_id}", response_model=AlarmOut, responses={404: {}})
async def get_alarm(conn: Conn, user: CurrentUser, alarm_id: AlarmId) -> AlarmOut:
    return await _one(conn, alarm_id)


@router.post(
    "/alarms/{alarm_id}/acknowledge",
    response_model=AlarmOut,
    responses={403: {}, 404: {}, 409: {"description": "already acknowledged or normal"}},
)
async def acknowledge_alarm(conn: Conn, user: Acknowledger, alarm_id: AlarmId) -> AlarmOut:
    # The returned AlarmEvent messages are not published: the API never talks to the broker.
    await acknowledge(conn, alarm_id, user.username, datetime.now(UTC))
    return await _one(conn, alarm_id)
