"""GET /devices and /devices/{name}: each device with its place (site, building, gateway),
type and profile, online status (device_status, 'unknown' if never reported), its gateway's
status, and its latest values typed by the point's declared type."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.deps import Conn, CurrentUser
from api.errors import NotFound
from api.values import JsonValue, quality_name, typed_value

router = APIRouter(tags=["devices"])
ID_PATTERN = r"^[a-z0-9_-]{1,64}$"


class PointValue(BaseModel):
    value: JsonValue
    quality: str
    time: datetime
    unit: str


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
ORDER BY d.site_id, d.building, d.name
"""

_VALUES_SQL = """
SELECT p.device_id, p.name, p.type, p.unit, v.value, v.value_text, v.quality, v.time
FROM points p JOIN latest_values v ON v.point_id = p.id
WHERE p.device_id = ANY(%s)
ORDER BY p.device_id, p.name
"""


async def _load(conn: psycopg.AsyncConnection[Any], **filters: str | None) -> list[DeviceOut]:
    cur = await conn.execute(_DEVICES_SQL, filters)
    rows = await cur.fetchall()
    values: dict[int, dict[str, PointValue]] = {row[0]: {} for row in rows}
    if values:
        cur = await conn.execute(_VALUES_SQL, (list(values),))
        for dev_id, point, ptype, unit, value, text, quality, time in await cur.fetchall():
            values[dev_id][point] = PointValue(
                value=typed_value(ptype, value, text), quality=quality_name(quality),
                time=time, unit=unit,
            )
    return [
        DeviceOut(
            name=r[1], display_name=r[2], site=r[3], building=r[4], gateway=r[5], type=r[6],
            profile=r[7], protocol=r[8], status=r[9], status_reason=r[10], status_time=r[11],
            gateway_status=r[12], values=values[r[0]],
        )
        for r in rows
    ]


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(
    conn: Conn,
    user: CurrentUser,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    building: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    type: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> list[DeviceOut]:
    return await _load(conn, name=None, site=site, building=building, type=type)


@router.get("/devices/{name}", response_model=DeviceOut, responses={404: {}})
async def get_device(
    conn: Conn, user: CurrentUser, name: Annotated[str, Path(pattern=ID_PATTERN)]
) -> DeviceOut:
    found = await _load(conn, name=name, site=None, building=None, type=None)
    if not found:
        raise NotFound("device", name)
    return found[0]
