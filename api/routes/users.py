"""Staff accounts, for the admin only: list, create, and change role, name, trade, password or
active flag. Passwords are hashed with argon2 (facility.users) off the event loop; a
deactivated user's tokens are revoked at once (and with them their live streams). Every change
is recorded in the audit log in the same transaction: user.create, user.role (from, to),
user.password, user.deactivate, user.activate, user.update (which fields)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Path
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.deps import Admin, ClientAddress, Conn, Pool
from api.errors import Conflict
from api.rows import fetch_one, from_row
from facility.users import Role, hash_password

router = APIRouter(tags=["users"])
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"
Trade = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]


class UserOut(BaseModel):
    username: str
    display_name: str
    role: Role
    trade: str | None
    active: bool
    created_at: datetime


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME)
    password: str = Field(min_length=8, max_length=256)
    role: Role
    display_name: str = Field(default="", max_length=100)
    trade: Trade | None = None


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(default=None, min_length=8, max_length=256)
    role: Role | None = None
    display_name: str | None = Field(default=None, max_length=100)
    trade: Trade | None = None
    active: bool | None = None


_SELECT = "SELECT username, display_name, role, trade, active, created_at FROM users"


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
                    "INSERT INTO users (username, display_name, role, trade, password_hash)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (body.username, body.display_name, str(body.role), body.trade, hashed))
                await audit.record(conn, actor=user.username, action="user.create",
                                   target=body.username, address=address,
                                   detail={"role": str(body.role), "trade": body.trade})
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"user {body.username} already exists") from None
        return await _one(conn, body.username)


def _audit_actions(before: UserOut, changes: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The audit entries of a change: (action, detail)."""
    out: list[tuple[str, dict[str, Any]]] = []
    if "role" in changes and changes["role"] != before.role:
        out.append(("user.role", {"from": str(before.role), "to": str(changes["role"])}))
    if "password_hash" in changes:
        out.append(("user.password", {}))
    if "active" in changes and changes["active"] != before.active:
        out.append(("user.activate" if changes["active"] else "user.deactivate", {}))
    fields = sorted(k for k in ("display_name", "trade")
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
                await _apply(conn, username, changes)
        return await _one(conn, username)


async def _apply(conn: psycopg.AsyncConnection[Any], username: str, changes: dict[str, Any]
                 ) -> None:
    sets = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in changes)
    params = {k: str(v) if isinstance(v, Role) else v for k, v in changes.items()}
    await conn.execute(sql.SQL("UPDATE users SET {} WHERE username = %(u)s").format(sets),
                       {**params, "u": username})
    if changes.get("active") is False or "password_hash" in changes:
        await conn.execute("DELETE FROM api_tokens WHERE user_id ="
                           " (SELECT id FROM users WHERE username = %s)", (username,))
