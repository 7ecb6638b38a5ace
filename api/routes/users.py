"""Staff accounts, for the admin only: list, create, and change role, name, trade, password, scope
(every site, or the listed sites and buildings: facility.scope), language or active flag.
Passwords are hashed with argon2 (facility.users) off the event loop; a deactivated user's
tokens are revoked at once (and with them their live streams). Every change is recorded in the
audit log in the same transaction: user.create, user.role (from, to), user.password,
user.deactivate, user.activate, user.scope (from, to), user.update (which fields). A new scope
or password revokes the user's tokens, so their pages and live stream sign in again under the
new scope."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Path
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.deps import Admin, ClientAddress, Conn, Pool
from api.errors import Conflict
from api.rows import fetch_one, from_row
from facility.scope import ENTRY
from facility.users import Role, hash_password

router = APIRouter(tags=["users"])
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"
Trade = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
Language = Literal["zh-CN", "en"]


ScopeIn = Annotated[list[Annotated[str, Field(pattern=ENTRY.pattern)]] | None, Field(
    max_length=500, description="null: every site (the monitoring centre); else 'site' or"
    " 'site/building' entries")]


class UserOut(BaseModel):
    username: str
    display_name: str
    role: Role
    trade: str | None
    active: bool
    created_at: datetime
    language: Language
    scope: list[str] | None = Field(description="null: every site; else the sites and"
                                    " 'site/building' entries the user sees")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME)
    password: str = Field(min_length=8, max_length=256)
    role: Role
    display_name: str = Field(default="", max_length=100)
    trade: Trade | None = None
    scope: ScopeIn = None
    language: Language = "zh-CN"


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(default=None, min_length=8, max_length=256)
    role: Role | None = None
    display_name: str | None = Field(default=None, max_length=100)
    trade: Trade | None = None
    active: bool | None = None
    scope: ScopeIn = None
    language: Language | None = None


_SELECT = ("SELECT username, display_name, role, trade, active, created_at, language,"
           " CASE WHEN all_sites THEN NULL ELSE ARRAY(SELECT site_id || CASE building"
           " WHEN '' THEN '' ELSE '/' || building END FROM user_scopes s"
           " WHERE s.user_id = users.id ORDER BY 1) END FROM users")


async def _set_scope(conn: psycopg.AsyncConnection[Any], username: str,
                     entries: list[str] | None) -> None:
    """Replace the user's scope (None: every site); in the caller's transaction."""
    await conn.execute("UPDATE users SET all_sites = %s WHERE username = %s",
                       (entries is None, username))
    await conn.execute("DELETE FROM user_scopes WHERE user_id ="
                       " (SELECT id FROM users WHERE username = %s)", (username,))
    for entry in entries or []:
        site, _, building = entry.partition("/")
        await conn.execute(
            "INSERT INTO user_scopes (user_id, site_id, building) SELECT id, %s, %s FROM users"
            " WHERE username = %s ON CONFLICT DO NOTHING", (site, building, username))


async def _one(conn: psycopg.AsyncConnection[Any], username: str) -> UserOut:
    return await fetch_one(conn, UserOut, _SELECT + " WHERE username = %s", (username,), "user",
                           username)


@router.get("/users", response_model=list[UserOut])
async def list_users(conn: Conn, user: Admin) -> list[UserOut]:
    cur = await conn.execute(_SELECT + " ORDER BY username")
    return [from_row(UserOut, r) for r in await cur.fetchall()]


@router.post("/users", response_model=UserOut, status_code=201, responses={409: {}})
async def create_user(
    pool: Pool, user: Admin, body: UserIn, address: ClientAddress
) -> UserOut:
    hashed = await asyncio.to_thread(hash_password, body.password)  # no connection held
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO users (username, display_name, role, trade, password_hash,"
                    " language) VALUES (%s, %s, %s, %s, %s, %s)",
                    (body.username, body.display_name, str(body.role), body.trade, hashed,
                     body.language))
                await _set_scope(conn, body.username, _normal(body.scope))
                await audit.record(conn, actor=user.username, action="user.create",
                                   target=body.username, address=address,
                                   detail={"role": str(body.role), "trade": body.trade,
                                           "scope": _normal(body.scope)})
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"user {body.username} already exists") from None
        return await _one(conn, body.username)


def _normal(entries: list[str] | None) -> list[str] | None:
    """A scope as stored and compared: sorted, without repeats (None: every site)."""
    return None if entries is None else sorted(set(entries))


def _audit_actions(before: UserOut, changes: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The audit entries of a change: (action, detail)."""
    out: list[tuple[str, dict[str, Any]]] = []
    if "role" in changes and changes["role"] != before.role:
        out.append(("user.role", {"from": str(before.role), "to": str(changes["role"])}))
    if "password_hash" in changes:
        out.append(("user.password", {}))
    if "active" in changes and changes["active"] != before.active:
        out.append(("user.activate" if changes["active"] else "user.deactivate", {}))
    if "scope" in changes and changes["scope"] != before.scope:
        out.append(("user.scope", {"from": before.scope, "to": changes["scope"]}))
    fields = sorted(k for k in ("display_name", "trade", "language")
                    if k in changes and changes[k] != getattr(before, k))
    if fields:
        out.append(("user.update", {"fields": fields}))
    return out


@router.patch("/users/{username}", response_model=UserOut, responses={404: {}, 409: {}})
async def update_user(
    pool: Pool, user: Admin, username: Annotated[str, Path(pattern=USERNAME)], body: UserPatch,
    address: ClientAddress,
) -> UserOut:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"password"})
    if "scope" in changes:
        changes["scope"] = _normal(changes["scope"])
    if any(key in changes and changes[key] is None for key in ("role", "active")):
        raise Conflict("role and active cannot be null")
    if username == user.username and (changes.get("active") is False
                                      or changes.get("role") not in (None, Role.ADMIN)):
        raise Conflict("an admin cannot deactivate or demote themself")
    if body.password is not None:  # hashed with no connection held
        changes["password_hash"] = await asyncio.to_thread(hash_password, body.password)
    async with pool.connection() as conn:
        async with conn.transaction():
            before = await _one(conn, username)
            for action, detail in _audit_actions(before, changes):
                await audit.record(conn, actor=user.username, action=action, target=username,
                                   address=address, detail=detail)
            if changes:
                await _apply(conn, username, changes, new_scope=changes.get("scope", before.scope)
                             != before.scope)
        return await _one(conn, username)


async def _apply(conn: psycopg.AsyncConnection[Any], username: str, changes: dict[str, Any],
                 *, new_scope: bool) -> None:
    """Write the changes (in the caller's transaction); a deactivation, a new password or a
    new scope revokes the user's tokens."""
    if new_scope:
        await _set_scope(conn, username, changes["scope"])
    columns = {k: v for k, v in changes.items() if k != "scope"}
    if columns:
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns)
        params = {k: str(v) if isinstance(v, Role) else v for k, v in columns.items()}
        await conn.execute(sql.SQL("UPDATE users SET {} WHERE username = %(u)s").format(sets),
                           {**params, "u": username})
    if changes.get("active") is False or "password_hash" in changes or new_scope:
        await conn.execute("DELETE FROM api_tokens WHERE user_id ="
                           " (SELECT id FROM users WHERE username = %s)", (username,))
