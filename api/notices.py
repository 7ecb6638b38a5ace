"""Notices to residents (停电/停水/停气 通知, table ``resident_notices``, migration 0012). An
outage alarm drafts one (a database trigger: building, what, since when); the duty room edits
the text and the expected restoration and publishes it; published notices are shown on the
site's public page (lobby screens, a link in the residents' chat group); the notice is closed
when the alarm's work order is resolved (another trigger), or by hand. SQL only; the routes
check roles and record the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from api.rows import from_row
from facility.scope import Scope
from facility.scope import site_sql as site_scope_sql
from facility.scope import sql as scope_sql

NOTICE_TZ = ZoneInfo("Asia/Shanghai")
"""Times on the public page, as in the drafts the trigger writes: the estates' local time."""
NoticeState = Literal["draft", "published", "closed"]
NoticeKind = Literal["power", "water", "gas", "other"]


class NoticeOut(BaseModel):
    id: int
    site: str
    building: str
    kind: NoticeKind
    alarm_id: int | None
    title: str
    body: str
    since: datetime
    expected_restore: datetime | None
    state: NoticeState
    created_at: datetime
    published_at: datetime | None
    published_by: str | None
    closed_at: datetime | None
    updated_by: str | None


class PublicNotice(BaseModel):
    """What the public page shows: nothing but the notice itself."""

    building: str
    kind: NoticeKind
    title: str
    body: str
    since: datetime
    expected_restore: datetime | None
    published_at: datetime | None


class NoticePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=4000)
    expected_restore: datetime | None = None
    building: str | None = Field(default=None, max_length=64)


class NoticeIn(BaseModel):
    """A notice written by hand (a planned outage, or one the alarms did not see)."""

    model_config = ConfigDict(extra="forbid")

    site: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    building: str = Field(default="", max_length=64)
    kind: NoticeKind
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=4000)
    since: datetime
    expected_restore: datetime | None = None


_SELECT = ("SELECT id, site_id, building, kind, alarm_id, title, body, since,"
           " expected_restore, state, created_at, published_at, published_by, closed_at,"
           " updated_by FROM resident_notices")


async def list_notices(conn: psycopg.AsyncConnection[Any], scope: Scope, site: str | None,
                       state: NoticeState | None, limit: int) -> list[NoticeOut]:
    """The notices of ``scope``: of its buildings, and the site-wide ones of its sites."""
    cur = await conn.execute(
        _SELECT + " WHERE (%(site)s::text IS NULL OR site_id = %(site)s)"
        " AND (%(state)s::text IS NULL OR state = %(state)s)"
        " AND (" + scope_sql("site_id", "building")
        + " OR (building = '' AND " + site_scope_sql("site_id") + "))"
        " ORDER BY (state = 'closed'), since DESC LIMIT %(limit)s",
        {"site": site, "state": state, "limit": limit, **scope.params()})
    return [from_row(NoticeOut, r) for r in await cur.fetchall()]


async def get_notice(conn: psycopg.AsyncConnection[Any], notice_id: int) -> NoticeOut | None:
    cur = await conn.execute(_SELECT + " WHERE id = %s", (notice_id,))
    row = await cur.fetchone()
    return None if row is None else from_row(NoticeOut, row)


async def create(conn: psycopg.AsyncConnection[Any], body: NoticeIn, actor: str) -> int:
    cur = await conn.execute(
        "INSERT INTO resident_notices (site_id, building, kind, title, body, since,"
        " expected_restore, state, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, 'draft', %s)"
        " RETURNING id",
        (body.site, body.building, body.kind, body.title, body.body, body.since,
         body.expected_restore, actor))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def update(conn: psycopg.AsyncConnection[Any], notice_id: int, patch: NoticePatch,
                 actor: str) -> list[str]:
    """The fields changed (only those sent)."""
    sent = patch.model_dump(exclude_unset=True)
    for field, value in sent.items():
        await conn.execute(
            sql.SQL("UPDATE resident_notices SET {} = %s, updated_by = %s WHERE id = %s")
            .format(sql.Identifier(field)), (value, actor, notice_id))
    return sorted(sent)


async def set_state(conn: psycopg.AsyncConnection[Any], notice_id: int, state: NoticeState,
                    actor: str) -> None:
    if state == "published":
        await conn.execute(
            "UPDATE resident_notices SET state = 'published', published_at = now(),"
            " published_by = %s, updated_by = %s WHERE id = %s", (actor, actor, notice_id))
    else:
        await conn.execute(
            "UPDATE resident_notices SET state = 'closed', closed_at = now(), updated_by = %s"
            " WHERE id = %s", (actor, notice_id))


async def published(conn: psycopg.AsyncConnection[Any], site: str) -> list[PublicNotice]:
    cur = await conn.execute(
        "SELECT building, kind, title, body, since, expected_restore, published_at"
        " FROM resident_notices WHERE site_id = %s AND state = 'published'"
        " ORDER BY since DESC LIMIT 50", (site,))
    return [from_row(PublicNotice, r) for r in await cur.fetchall()]
