"""GET /sites: each site with its buildings, and per building how many devices are online,
offline or not yet heard from and how many alarms are open; names come from the site file
the API was started with, ids from the database. GET /procedures and /procedures/{id}: the
documented procedures as loaded. GET /roster: who is on call now per site and roster, as the
rules service last computed it (table dispatch_on_call), with the shifts; the staff's mobile
numbers only for the roles that dispatch (operator, manager, admin), ``null`` for others."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field, TypeAdapter

from api.deps import DISPATCHING_ROLES, Config, Conn, CurrentUser
from api.errors import NotFound
from api.routes.devices import ID_PATTERN
from facility.scope import site_sql

router = APIRouter()


class BuildingOut(BaseModel):
    id: str
    name: str
    devices: int
    online: int
    offline: int
    unknown: int
    open_alarms: int
    critical: int = Field(description="open alarms of critical priority")
    high: int
    medium: int
    low: int


class SiteOut(BaseModel):
    id: str
    name: str
    buildings: list[BuildingOut]


# Devices are many, open alarms few: one pass over the devices with their status grouped by
# building (no other join in that pass), then the open alarms by building and priority (the
# partial index alarms_open), and the building names; merged here.
_STATES = """
SELECT d.site_id, d.building, count(*)::int,
       (count(*) FILTER (WHERE s.state = 'online'))::int,
       (count(*) FILTER (WHERE s.state = 'offline'))::int,
       (count(*) FILTER (WHERE s.state IS NULL))::int
FROM devices d LEFT JOIN device_status s ON s.device_id = d.id
GROUP BY 1, 2 ORDER BY 1, 2
"""
_OPEN_ALARMS = """
SELECT d.site_id, d.building, a.priority, count(*)::int
FROM alarms a JOIN devices d ON d.id = a.device_id
WHERE a.state <> 'normal' GROUP BY 1, 2, 3
"""

_SITES_JSON: TypeAdapter[list[SiteOut]] = TypeAdapter(list[SiteOut])


@router.get("/sites", response_model=list[SiteOut], tags=["sites"])
async def list_sites(conn: Conn, user: CurrentUser, config: Config) -> Response:
    """Every site with its buildings: device states and open alarms by priority (the duty
    room's portfolio overview; building names from the registry, else the site file). At
    1,000 buildings the models are built unchecked from the typed rows and serialised once
    (FastAPI would validate them all a second time)."""
    names: dict[tuple[str, str], str] = {}
    site_name: dict[str, str] = {}
    if config.site is not None:
        site_name[config.site.id] = config.site.config.name or config.site.id
        names = {(config.site.id, b.id): b.name for b in config.site.config.buildings}
    cur = await conn.execute("SELECT id, name FROM sites ORDER BY id")
    sites = {r[0]: SiteOut(id=r[0], name=site_name.get(r[0]) or r[1] or r[0], buildings=[])
             for r in await cur.fetchall() if user.scope.sees_site(r[0])}
    cur = await conn.execute("SELECT site_id, id, name FROM buildings")
    names.update({(r[0], r[1]): r[2] for r in await cur.fetchall() if r[2]})
    cur = await conn.execute(_OPEN_ALARMS)
    alarms: dict[tuple[str, str], dict[str, int]] = {}
    for site, building, priority, count in await cur.fetchall():
        alarms.setdefault((site, building), {})[priority] = count
    cur = await conn.execute(_STATES)
    for site, building, total, online, offline, unknown in await cur.fetchall():
        if site in sites and user.scope.sees(site, building):
            prio = alarms.get((site, building), {})
            sites[site].buildings.append(BuildingOut.model_construct(
                id=building, name=names.get((site, building)) or building, devices=total,
                online=online, offline=offline, unknown=unknown,
                open_alarms=sum(prio.values()), critical=prio.get("critical", 0),
                high=prio.get("high", 0), medium=prio.get("medium", 0), low=prio.get("low", 0)))
    return Response(_SITES_JSON.dump_json(list(sites.values())), media_type="application/json")


class ProcedureOut(BaseModel):
    id: str
    title: str
    title_en: str
    trade: str
    priority: str
    version: int
    sla: dict[str, float]


class ProcedureDetail(ProcedureOut):
    body: dict[str, Any]


def _procedure(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "title": row[1], "title_en": row[2], "trade": row[3],
            "priority": row[4], "version": row[5], "sla": row[6].get("sla", {}), "body": row[6]}


@router.get("/procedures", response_model=list[ProcedureOut], tags=["procedures"])
async def list_procedures(conn: Conn, user: CurrentUser) -> list[ProcedureOut]:
    cur = await conn.execute(
        "SELECT id, title, title_en, trade, priority, version, body FROM procedures ORDER BY id")
    return [ProcedureOut.model_validate(_procedure(r)) for r in await cur.fetchall()]


@router.get("/procedures/{procedure_id}", response_model=ProcedureDetail,
            responses={404: {}}, tags=["procedures"])
async def get_procedure(
    conn: Conn, user: CurrentUser,
    procedure_id: Annotated[str, Path(pattern=r"^[a-z0-9_]{1,64}$")],
) -> ProcedureDetail:
    cur = await conn.execute(
        "SELECT id, title, title_en, trade, priority, version, body FROM procedures"
        " WHERE id = %s", (procedure_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("procedure", procedure_id)
    return ProcedureDetail.model_validate(_procedure(row))


class OnCall(BaseModel):
    rank: int
    username: str
    display_name: str
    mobile: str | None = Field(description="null unless the caller dispatches (operator,"
                               " manager, admin)")
    shift: str
    since: datetime | None
    until: datetime | None


class Shift(BaseModel):
    name: str
    days: list[int]
    start: time
    end: time
    on_call: list[str]


class RosterOut(BaseModel):
    site: str
    roster: str
    timezone: str
    on_call: list[OnCall]
    shifts: list[Shift]
    computed_at: datetime | None


@router.get("/roster", response_model=list[RosterOut], tags=["roster"])
async def roster(
    conn: Conn, user: CurrentUser,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    name: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,64}$")] = None,
) -> list[RosterOut]:
    """Who is on call now for each trade or escalation role (primary first, then backups)."""
    show_mobile = user.role in DISPATCHING_ROLES
    params = {"site": site, "name": name, **user.scope.params()}
    flt = (" WHERE (%(site)s::text IS NULL OR site_id = %(site)s)"
           " AND (%(name)s::text IS NULL OR roster = %(name)s) AND " + site_sql("site_id"))
    cur = await conn.execute(
        "SELECT site_id, roster, timezone FROM dispatch_rosters" + flt + " ORDER BY 1, 2", params)
    out = {(r[0], r[1]): RosterOut(site=r[0], roster=r[1], timezone=r[2], on_call=[], shifts=[],
                                   computed_at=None) for r in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT o.site_id, o.roster, o.rank, o.username, coalesce(s.display_name, ''),"
        " coalesce(s.mobile, ''), o.shift, o.since, o.until, o.computed_at"
        " FROM dispatch_on_call o LEFT JOIN dispatch_staff s"
        " ON s.site_id = o.site_id AND s.username = o.username"
        + flt.replace("site_id", "o.site_id").replace("roster =", "o.roster =")
        + " ORDER BY 1, 2, 3", params)
    for site_id, name_, rank, username, display, mobile, shift, since, until, at in (
            await cur.fetchall()):
        if (entry := out.get((site_id, name_))) is not None:
            entry.on_call.append(OnCall(rank=rank, username=username, display_name=display,
                                        mobile=mobile if show_mobile else None, shift=shift,
                                        since=since, until=until))
            entry.computed_at = at
    cur = await conn.execute(
        "SELECT site_id, roster, name, days, start_time, end_time, on_call FROM dispatch_shifts"
        + flt + " ORDER BY 1, 2, seq", params)
    for site_id, name_, shift_name, days, start, end, people in await cur.fetchall():
        if (entry := out.get((site_id, name_))) is not None:
            entry.shifts.append(Shift(name=shift_name, days=list(days), start=start, end=end,
                                      on_call=list(people)))
    return list(out.values())
