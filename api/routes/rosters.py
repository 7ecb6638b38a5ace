"""Rosters people can change (managers and admins): a roster's shifts and backups replaced
(PUT /rosters/{site}/{roster}), shift swaps added and cancelled, and the record of every change
(who, when, what: the audit log's roster.update, roster.swap, roster.swap_cancel). The tables
are the dispatcher's (dispatch_rosters, dispatch_shifts, roster_swaps): the rules service
reloads them every few seconds, so an edit takes effect without a restart, and keeps an
edited roster as edited when it restarts with its dispatch file (which still seeds the rest).
Everyone signed in sees who is on call now through GET /roster (api.routes.sites)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Path, Query
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import audit
from api.audit import AuditEntry
from api.deps import Authoriser, ClientAddress, Conn
from api.errors import ApiError, Conflict, NotFound
from api.scoping import check_place, where

router = APIRouter(tags=["roster"])
SiteId = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}$")]
RosterName = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,64}$")]
USER = r"^[A-Za-z0-9_.@-]{1,64}$"


class ShiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(min_length=1, max_length=7,
                                                          description="ISO weekdays it starts")
    start: time
    end: time = Field(description="at or before start: the shift runs past midnight")
    on_call: list[Annotated[str, Field(pattern=USER)]] = Field(min_length=1, max_length=20)


class RosterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shifts: list[ShiftIn] = Field(max_length=20)
    backup: list[Annotated[str, Field(pattern=USER)]] = Field(default=[], max_length=20)


class RosterDef(RosterIn):
    model_config = ConfigDict(extra="ignore")

    site: str
    roster: str
    timezone: str
    channels: list[str]
    edited_by: str | None
    edited_at: datetime | None


class SwapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    original: str = Field(pattern=USER)
    substitute: str = Field(pattern=USER)
    starts_at: datetime
    ends_at: datetime
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _sane(self) -> SwapIn:
        if self.original == self.substitute:
            raise ValueError("the substitute must be someone else")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class SwapOut(SwapIn):
    model_config = ConfigDict(extra="ignore")

    id: int
    site: str
    roster: str
    created_by: str
    created_at: datetime
    cancelled_by: str | None
    cancelled_at: datetime | None


async def _body(conn: psycopg.AsyncConnection[Any], site: str,
                roster: str) -> dict[str, Any]:
    cur = await conn.execute("SELECT body FROM dispatch_rosters WHERE site_id = %s"
                             " AND roster = %s FOR UPDATE", (site, roster))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("roster", f"{site}/{roster}")
    return dict(row[0])


async def _check_staff(conn: psycopg.AsyncConnection[Any], site: str,
                       usernames: set[str]) -> None:
    cur = await conn.execute("SELECT username FROM dispatch_staff WHERE site_id = %s"
                             " AND username = ANY(%s)", (site, sorted(usernames)))
    unknown = usernames - {r[0] for r in await cur.fetchall()}
    if unknown:
        raise ApiError(f"not staff of site {site}: {', '.join(sorted(unknown))}")


@router.get("/rosters", response_model=list[RosterDef])
async def list_rosters(
    conn: Conn, user: Authoriser,
    site: Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,64}$")] = None,
) -> list[RosterDef]:
    """Every roster as defined now (the dispatch file's, or as edited)."""
    cond, params = where(user, "site_id")
    cur = await conn.execute(
        "SELECT site_id, roster, timezone, body, edited_by, edited_at FROM dispatch_rosters"
        " WHERE (%(site)s::text IS NULL OR site_id = %(site)s) AND " + cond + " ORDER BY 1, 2",
        {**params, "site": site})
    return [RosterDef.model_validate({**body, "site": s, "roster": r, "timezone": tz,
                                      "channels": body.get("channels", []),
                                      "edited_by": by, "edited_at": at})
            for s, r, tz, body, by, at in await cur.fetchall()]


@router.put("/rosters/{site}/{roster}", response_model=RosterDef)
async def put_roster(conn: Conn, user: Authoriser, site: SiteId, roster: RosterName,
                     body: RosterIn, address: ClientAddress) -> RosterDef:
    """Replace the roster's shifts and backups (its channels stay)."""
    check_place(user, site, None)
    async with conn.transaction():
        before = await _body(conn, site, roster)
        people = {u for s in body.shifts for u in s.on_call} | set(body.backup)
        await _check_staff(conn, site, people)
        after = {**before, **body.model_dump(mode="json")}
        await conn.execute(
            "UPDATE dispatch_rosters SET body = %s, backup = %s, edited_by = %s,"
            " edited_at = now() WHERE site_id = %s AND roster = %s",
            (Jsonb(after), body.backup, user.username, site, roster))
        await conn.execute("DELETE FROM dispatch_shifts WHERE site_id = %s AND roster = %s",
                           (site, roster))
        for seq, s in enumerate(body.shifts, start=1):
            await conn.execute(
                "INSERT INTO dispatch_shifts (site_id, roster, seq, name, days, start_time,"
                " end_time, on_call) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (site, roster, seq, s.name, s.days, s.start, s.end, s.on_call))
        await audit.record(conn, actor=user.username, action="roster.update",
                           target=f"{site}/{roster}", address=address,
                           detail={"before": {k: before.get(k) for k in ("shifts", "backup")},
                                   "after": body.model_dump(mode="json")})
    [found] = [r for r in await list_rosters(conn, user, site) if r.roster == roster]
    return found


_SWAPS = ("SELECT original, substitute, starts_at, ends_at, reason, id, site_id, roster,"
          " created_by, created_at, cancelled_by, cancelled_at FROM roster_swaps")
_SWAP_FIELDS = ("original", "substitute", "starts_at", "ends_at", "reason", "id", "site",
                "roster", "created_by", "created_at", "cancelled_by", "cancelled_at")


def _swap(row: tuple[Any, ...]) -> SwapOut:
    return SwapOut.model_validate(dict(zip(_SWAP_FIELDS, row, strict=True)))


@router.get("/roster-swaps", response_model=list[SwapOut])
async def list_swaps(
    conn: Conn, user: Authoriser,
    site: Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,64}$")] = None,
) -> list[SwapOut]:
    """Swaps not yet over (cancelled ones included, marked), soonest first."""
    cond, params = where(user, "site_id")
    cur = await conn.execute(
        _SWAPS + " WHERE (%(site)s::text IS NULL OR site_id = %(site)s) AND ends_at > now()"
        " AND " + cond + " ORDER BY starts_at, id", {**params, "site": site})
    return [_swap(r) for r in await cur.fetchall()]


@router.post("/rosters/{site}/{roster}/swaps", response_model=SwapOut, status_code=201)
async def add_swap(conn: Conn, user: Authoriser, site: SiteId, roster: RosterName,
                   body: SwapIn, address: ClientAddress) -> SwapOut:
    check_place(user, site, None)
    async with conn.transaction():
        await _body(conn, site, roster)
        await _check_staff(conn, site, {body.original, body.substitute})
        cur = await conn.execute(
            "INSERT INTO roster_swaps (site_id, roster, original, substitute, starts_at,"
            " ends_at, reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id", (site, roster, body.original, body.substitute, body.starts_at,
                              body.ends_at, body.reason, user.username))
        row = await cur.fetchone()
        assert row is not None
        await audit.record(conn, actor=user.username, action="roster.swap",
                           target=f"{site}/{roster}", address=address,
                           detail={"id": row[0], **body.model_dump(mode="json")})
    cur = await conn.execute(_SWAPS + " WHERE id = %s", (row[0],))
    found = await cur.fetchone()
    assert found is not None
    return _swap(found)


@router.post("/roster-swaps/{swap_id}/cancel", response_model=SwapOut, responses={409: {}})
async def cancel_swap(conn: Conn, user: Authoriser, swap_id: Annotated[int, Path(ge=1)],
                      address: ClientAddress) -> SwapOut:
    cur = await conn.execute("SELECT site_id FROM roster_swaps WHERE id = %s", (swap_id,))
    owner = await cur.fetchone()
    if owner is None or not user.scope.sees(owner[0]):
        raise NotFound("swap", swap_id)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE roster_swaps SET cancelled_by = %s, cancelled_at = now() WHERE id = %s"
            " AND cancelled_at IS NULL RETURNING site_id, roster", (user.username, swap_id))
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute("SELECT 1 FROM roster_swaps WHERE id = %s", (swap_id,))
            if await cur.fetchone() is None:
                raise NotFound("swap", swap_id)
            raise Conflict(f"swap {swap_id} is already cancelled")
        await audit.record(conn, actor=user.username, action="roster.swap_cancel",
                           target=f"{row[0]}/{row[1]}", address=address,
                           detail={"id": swap_id})
    cur = await conn.execute(_SWAPS + " WHERE id = %s", (swap_id,))
    found = await cur.fetchone()
    assert found is not None
    return _swap(found)


@router.get("/roster-changes", response_model=list[AuditEntry])
async def roster_changes(
    conn: Conn, user: Authoriser, limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[AuditEntry]:
    """The record of roster changes and swaps (who, when, what), newest first; of the
    sites in the user's scope (the target is 'site/roster')."""
    found = await audit.entries(conn, action="roster", actor=None, target=None, since=None,
                                before_id=None, limit=limit)
    return [e for e in found if user.scope.sees_site((e.target or "").split("/", 1)[0])]
