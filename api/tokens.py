"""Bearer tokens: opaque random strings handed to the client once; the database keeps only
their SHA-256 digest and an expiry. A token names a user until it expires, is revoked (sign-out,
a password change) or the user is deactivated."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from datetime import timedelta

import psycopg

from facility.scope import Scope
from facility.users import Role, User, language_of


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def issue_token(conn: psycopg.AsyncConnection, user_id: int, ttl: timedelta) -> str:
    """Store a new token for the user (and drop expired ones); returns the token."""
    token = secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute("DELETE FROM api_tokens WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO api_tokens (token_sha256, user_id, expires_at)"
            " VALUES (%s, %s, now() + %s)",
            (digest(token), user_id, ttl),
        )
    return token


async def user_for_token(conn: psycopg.AsyncConnection, token: str) -> User | None:
    """The active user a valid, unexpired token belongs to, or None."""
    cur = await conn.execute(
        "SELECT u.id, u.username, u.display_name, u.role, u.trade, u.all_sites, u.language,"
        " ARRAY(SELECT site_id || CASE building WHEN '' THEN '' ELSE '/' || building END"
        "       FROM user_scopes WHERE user_id = u.id)"
        " FROM api_tokens t"
        " JOIN users u ON u.id = t.user_id"
        " WHERE t.token_sha256 = %s AND t.expires_at > now() AND u.active",
        (digest(token),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return User(id=row[0], username=row[1], display_name=row[2], role=Role(row[3]), trade=row[4],
                scope=Scope.of(None if row[5] else list(row[7])), language=language_of(row[6]))


async def valid_digests(conn: psycopg.AsyncConnection, digests: Collection[bytes]) -> set[bytes]:
    """Those of the token digests that still name an active user: not revoked, not expired
    (one query for every live stream of the process: api.event_hub)."""
    cur = await conn.execute(
        "SELECT t.token_sha256 FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_sha256 = ANY(%s) AND t.expires_at > now() AND u.active",
        (list(digests),),
    )
    return {bytes(r[0]) for r in await cur.fetchall()}


async def revoke(conn: psycopg.AsyncConnection, token: str) -> bool:
    """Forget the token (sign-out); False if it was not known."""
    cur = await conn.execute("DELETE FROM api_tokens WHERE token_sha256 = %s", (digest(token),))
    return cur.rowcount > 0
