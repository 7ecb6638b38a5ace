"""GET /devices and /devices/{name}: each device with its place (site, building, gateway),
type and profile, online status (device_status, 'unknown' if never reported), its gateway's
status, its latest values typed by the point's declared type with quality and age, and its
open alarms. /devices/{name}/points lists its points, /devices/{name}/status-history its
online/offline changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field, TypeAdapter

from api.deps import Conn, CurrentUser
from api.errors import NotFound
from api.rows import from_row
from api.scoping import check_device
from api.values import JsonValue, quality_name, typed_value
from facility.users import User

router = APIRouter(tags=["devices"])
ID_PATTERN = r"^[a-z0-9_-]{1,64}$"


class PointValue(BaseModel):
    value: JsonValue
    quality: str
    time: datetime
    unit: str
    age_s: float
    flags: str | None = Field(
        default=None, description="what the device said of the point with its latest value, "
        "in its protocol's words (BACnet status flags and reliability: fault,open-loop)")


class OpenAlarm(BaseModel):
    id: int
    type: str
    priority: str
    state: str
    message: str
    raised_at: datetime


class EnumLabel(BaseModel):
    zh: str
    en: str


class PointOut(BaseModel):
    name: str
    type: str
    unit: str
    tags: list[str]
    label: str = Field(description="display name in Chinese ('' if the profile has none)")
    label_en: str
    enum_labels: dict[str, EnumLabel] = Field(description="value -> what it means")


class StatusChange(BaseModel):
    time: datetime
    state: str
    reason: str


class DeviceOut(BaseModel):
    name: str
    display_name: str
    site: str
    building: str
    gateway: str
    type: str
    profile: str
    protocol: str
    status: str
    status_reason: str
    status_time: datetime | None
    gateway_status: str
    values: dict[str, PointValue]
    open_alarms: list[OpenAlarm]


_DEVICES_SQL = """
SELECT d.id, d.name, d.display_name, d.site_id, d.building, d.gateway, d.type, d.profile,
       d.protocol, coalesce(s.state, 'unknown'), coalesce(s.reason, ''), s.time,
       coalesce(g.state, 'unknown')
FROM devices d
LEFT JOIN device_status s ON s.device_id = d.id
LEFT JOIN gateway_status g ON g.site_id = d.site_id AND g.gateway = d.gateway
WHERE (%(name)s::text IS NULL OR d.name = %(name)s)
  AND (%(site)s::text IS NULL OR d.site_id = %(site)s)
  AND (%(building)s::text IS NULL OR d.building = %(building)s)
  AND (%(type)s::text IS NULL OR d.type = %(type)s)
  AND (%(scope_all)s OR d.site_id = ANY(%(scope_sites)s::text[])
       OR (d.site_id || '/' || d.building) = ANY(%(scope_bldgs)s::text[]))
  AND (%(q)s::text IS NULL OR d.name ILIKE %(q)s OR d.display_name ILIKE %(q)s)
  AND (NOT %(problems)s OR s.state = 'offline' OR g.state = 'offline'
       OR d.id IN (SELECT device_id FROM alarms WHERE state <> 'normal'
                   AND device_id IS NOT NULL))
ORDER BY d.site_id, d.building, d.name
LIMIT %(limit)s
"""

_VALUES_SQL = """
SELECT p.device_id, p.name, p.type, p.unit, v.value, v.value_text, v.quality, v.time,
       v.flags
FROM points p JOIN latest_values v ON v.point_id = p.id
WHERE p.device_id = ANY(%s)
ORDER BY p.device_id, p.name
"""


_ALARMS_SQL = """
SELECT device_id, id, alarm_type, priority, state, message, raised_at FROM alarms
WHERE device_id = ANY(%s) AND state <> 'normal' ORDER BY raised_at DESC
"""


async def _load(conn: psycopg.AsyncConnection[Any], user: User, *, with_values: bool = True,
                **filters: str | int | bool | None) -> list[DeviceOut]:
    """The devices the filters select within the user's scope."""
    cur = await conn.execute(_DEVICES_SQL, {**filters, **user.scope.params()})
    rows = await cur.fetchall()
    values: dict[int, dict[str, PointValue]] = {row[0]: {} for row in rows}
    alarms: dict[int, list[OpenAlarm]] = {row[0]: [] for row in rows}
    now = datetime.now(UTC)
    if values and with_values:
        cur = await conn.execute(_VALUES_SQL, (list(values),))
        for dev_id, point, ptype, unit, value, text, quality, time, flags in (
                await cur.fetchall()):
            values[dev_id][point] = PointValue(
                value=typed_value(ptype, value, text), quality=quality_name(quality),
                time=time, unit=unit, age_s=max(0.0, (now - time).total_seconds()),
                flags=flags,
            )
    if values:
        cur = await conn.execute(_ALARMS_SQL, (list(values),))
        for dev_id, *alarm in await cur.fetchall():
            alarms[dev_id].append(from_row(OpenAlarm, alarm))
    return [
        DeviceOut(
            name=r[1], display_name=r[2], site=r[3], building=r[4], gateway=r[5], type=r[6],
            profile=r[7], protocol=r[8], status=r[9], status_reason=r[10], status_time=r[11],
            gateway_status=r[12], values=values[r[0]], open_alarms=alarms[r[0]],
        )
        for r in rows
    ]


_DEVICES_JSON: TypeAdapter[list[DeviceOut]] = TypeAdapter(list[DeviceOut])


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(
    conn: Conn,
    user: CurrentUser,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    building: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    type: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=64,
                                   description="part of the id or the display name")] = None,
    problems: Annotated[bool, Query(description="only devices offline or with an open alarm"
                                    )] = False,
    limit: Annotated[int, Query(ge=1, le=20_000)] = 1000,
    values: Annotated[bool, Query(description="false: without latest values (status only)"
                                  )] = True,
) -> Response:
    """Devices in site, building and name order; a page shows one building (``site`` and
    ``building``) or searches (``q``), never the whole portfolio at once."""
    pattern = None if q is None else "%" + q.replace("\\", "").replace("%", "").replace(
        "_", "\\_") + "%"
    found = await _load(conn, user, with_values=values, name=None, site=site, building=building,
                        type=type, q=pattern, problems=problems, limit=limit)
    # built and checked once above; FastAPI would validate every value a second time
    return Response(_DEVICES_JSON.dump_json(found), media_type="application/json")


@router.get("/devices/{name}", response_model=DeviceOut, responses={404: {}})
async def get_device(
    conn: Conn, user: CurrentUser, name: Annotated[str, Path(pattern=ID_PATTERN)]
) -> DeviceOut:
    found = await _load(conn, user, name=name, site=None, building=None, type=None, q=None,
                         problems=False, limit=1)
    if not found:
        raise NotFound("device", name)
    return found[0]


async def _device_id(conn: psycopg.AsyncConnection[Any], user: User, name: str) -> int:
    await check_device(conn, user, name)
    cur = await conn.execute("SELECT id FROM devices WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("device", name)
    return int(row[0])


@router.get("/devices/{name}/points", response_model=list[PointOut], responses={404: {}})
async def device_points(
    conn: Conn, user: CurrentUser, name: Annotated[str, Path(pattern=ID_PATTERN)]
) -> list[PointOut]:
    cur = await conn.execute(
        "SELECT name, type, unit, tags, label, label_en, enum_labels FROM points"
        " WHERE device_id = %s ORDER BY id", (await _device_id(conn, user, name),),
    )
    return [PointOut(name=r[0], type=r[1], unit=r[2], tags=list(r[3]), label=r[4],
                     label_en=r[5], enum_labels=r[6]) for r in await cur.fetchall()]


@router.get("/devices/{name}/status-history", response_model=list[StatusChange],
            responses={404: {}})
async def status_history(
    conn: Conn, user: CurrentUser, name: Annotated[str, Path(pattern=ID_PATTERN)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[StatusChange]:
    """Online/offline changes, newest first."""
    cur = await conn.execute(
        "SELECT time, state, reason FROM device_status_history WHERE device_id = %s"
        " ORDER BY time DESC LIMIT %s", (await _device_id(conn, user, name), limit),
    )
    return [StatusChange(time=r[0], state=r[1], reason=r[2]) for r in await cur.fetchall()]
