"""At most once for requests that carry an ``Idempotency-Key`` header (the technician's
offline queue sends every queued write with one): an ASGI middleware that keeps, per user and
key, the first answer (status, type, body) in ``idempotent_requests`` (migration 0016) and
answers a repeat with it, without running the route again. The key is claimed (a row without a
status) before the route runs, so two copies racing cannot both run: the second is told 409
"in progress" and retries. A 5xx answer or an exception releases the key (nothing was done that
must not be repeated), anything else is kept for ``KEEP`` and then forgotten. A key reused for a
different method or path is refused (422). Requests without the header, reads, and requests
without a valid token pass through untouched (the route answers 401 as usual)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import tokens

log = logging.getLogger(__name__)
HEADER = b"idempotency-key"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_LEN = 100
KEEP = timedelta(days=7)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization") or ""
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


async def _answer(send: Send, status: int, body: bytes, content_type: str,
                  replayed: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()),
               (b"content-length", str(len(body)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _detail(text: str) -> bytes:
    return json.dumps({"detail": text}).encode()


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, HEADER) if scope["type"] == "http" else None
        token = _bearer(scope) if key else None
        if key is None or token is None or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        if not 0 < len(key) <= MAX_KEY_LEN:
            await _answer(send, 422, _detail("Idempotency-Key must be 1 to 100 characters"),
                          "application/json")
            return
        pool: AsyncConnectionPool[Any] = scope["app"].state.pool
        async with pool.connection() as conn:
            user = await tokens.user_for_token(conn, token)
            if user is None:
                claimed, row = False, None
            else:
                claimed, row = await _claim(conn, user.id, key, scope["method"], scope["path"])
        if user is None:
            await self.app(scope, receive, send)
            return
        if not claimed:
            await _repeat(send, row, scope["method"], scope["path"])
            return
        await self._run(scope, receive, send, pool, user.id, key)

    async def _run(self, scope: Scope, receive: Receive, send: Send,
                   pool: AsyncConnectionPool[Any], user_id: int, key: str) -> None:
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            status = int(started.get("status", 500))
            content_type = next((v.decode("latin-1") for k, v in started.get("headers", [])
                                 if k.lower() == b"content-type"), "application/json")
            async with pool.connection() as conn:
                if status >= 500:
                    await conn.execute("DELETE FROM idempotent_requests WHERE user_id = %s"
                                       " AND key = %s", (user_id, key))
                else:
                    await conn.execute(
                        "UPDATE idempotent_requests SET status = %s, content_type = %s,"
                        " body = %s WHERE user_id = %s AND key = %s",
                        (status, content_type, b"".join(chunks), user_id, key))


async def _claim(conn: Any, user_id: int, key: str, method: str,
                 path: str) -> tuple[bool, tuple[Any, ...] | None]:
    """(True, None) if this request is the first with the key; else (False, the kept row)."""
    await conn.execute("DELETE FROM idempotent_requests WHERE created_at < now() - %s", (KEEP,))
    cur = await conn.execute(
        "INSERT INTO idempotent_requests (user_id, key, method, path) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING 1", (user_id, key, method, path))
    if await cur.fetchone() is not None:
        return True, None
    cur = await conn.execute(
        "SELECT method, path, status, content_type, body FROM idempotent_requests"
        " WHERE user_id = %s AND key = %s", (user_id, key))
    return False, await cur.fetchone()


async def _repeat(send: Send, row: tuple[Any, ...] | None, method: str, path: str) -> None:
    if row is None:  # released between the insert and the select: let the client retry
        await _answer(send, 409, _detail("request in progress: retry"), "application/json")
    elif (row[0], row[1]) != (method, path):
        await _answer(send, 422, _detail("Idempotency-Key already used for another request"),
                      "application/json")
    elif row[2] is None:
        await _answer(send, 409, _detail("request in progress: retry"), "application/json")
    else:
        await _answer(send, int(row[2]), bytes(row[4]), str(row[3]), replayed=True)
