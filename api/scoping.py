"""The user's scope (facility.scope) applied to the API's reads: ``where`` gives the condition
and parameters a route adds to its query, and the ``check_*`` functions stop a request about one
alarm, work order, device, site or building outside the scope with NotFound (404, as if it did
not exist: a user learns nothing of the estates that are not theirs). A work order's building is
its device's, or for a repair request the building the desk wrote down."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

from api.errors import NotFound
from facility import scope
from facility.scope import Scope
from facility.users import User

WO_BUILDING: LiteralString = "coalesce(d.building, w.requester ->> 'building')"


def where(
    user: User, site: LiteralString, building: LiteralString | None = None
) -> tuple[LiteralString, dict[str, Any]]:
    """(SQL condition, its named parameters) for rows of (site, building) columns; without a
    building column, rows of every site the scope touches."""
    cond = scope.site_sql(site) if building is None else scope.sql(site, building)
    return cond, user.scope.params()


async def _exists(conn: psycopg.AsyncConnection[Any], query: LiteralString,
                  params: dict[str, Any]) -> bool:
    cur = await conn.execute(query, params)
    return await cur.fetchone() is not None


async def check_alarm(conn: psycopg.AsyncConnection[Any], user: User, alarm_id: int) -> None:
    cond, params = where(user, "a.site_id", "d.building")
    if not await _exists(conn, "SELECT 1 FROM alarms a LEFT JOIN devices d ON d.id = a.device_id"
                         " WHERE a.id = %(id)s AND " + cond, {**params, "id": alarm_id}):
        raise NotFound("alarm", alarm_id)


async def check_work_order(conn: psycopg.AsyncConnection[Any], user: User, wo_id: int) -> None:
    cond, params = where(user, "w.site_id", WO_BUILDING)
    if not await _exists(conn, "SELECT 1 FROM work_orders w"
                         " LEFT JOIN devices d ON d.id = w.device_id"
                         " WHERE w.id = %(id)s AND " + cond, {**params, "id": wo_id}):
        raise NotFound("work order", wo_id)


async def check_device(conn: psycopg.AsyncConnection[Any], user: User, name: str) -> None:
    cond, params = where(user, "d.site_id", "d.building")
    if not await _exists(conn, "SELECT 1 FROM devices d WHERE d.name = %(name)s AND " + cond,
                         {**params, "name": name}):
        raise NotFound("device", name)


def check_site(user: User, site: str) -> None:
    """Site-wide records (rosters, reports, notices): any part of the site in scope."""
    if not user.scope.sees_site(site):
        raise NotFound("site", site)


def check_place(user: User, site: str, building: str | None) -> None:
    """A record of one building (or, without one, of the whole site)."""
    if not user.scope.sees(site, building):
        raise NotFound("site" if building is None else "building",
                       site if building is None else f"{site}/{building}")


async def scope_of(conn: psycopg.AsyncConnection[Any], username: str) -> Scope | None:
    """The scope of an active user, or None if there is no such user."""
    cur = await conn.execute(
        "SELECT all_sites, ARRAY(SELECT site_id || CASE building WHEN '' THEN ''"
        " ELSE '/' || building END FROM user_scopes WHERE user_id = users.id)"
        " FROM users WHERE username = %s AND active", (username,))
    row = await cur.fetchone()
    if row is None:
        return None
    return Scope.of(None if row[0] else list(row[1]))
