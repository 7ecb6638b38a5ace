"""Shared set-up for the live-stream tests: the API app served by uvicorn on a free loopback
port in the test's own process (so a test can look at the app's pool and hub), a parser of
SSE messages from a streaming httpx response, signing in, and events recorded in the outbox
as the services record them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import uvicorn
from fastapi import FastAPI

from facility import events
from facility.messages import AlarmEvent
from facility.ports import free_port
from tests.integration.api_support import PASSWORD

TIMEOUT_S = 10


@contextlib.asynccontextmanager
async def serving(app: FastAPI, timeout_s: float = TIMEOUT_S) -> AsyncIterator[str]:
    """``app`` served on a free loopback port until the block ends; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_config=None, timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(), name=f"api[127.0.0.1:{port}]")
    async with asyncio.timeout(timeout_s):
        while not server.started and not task.done():  # no event to wait on  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert server.started, "the API did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        hub = getattr(app.state, "hub", None)
        if hub is not None:  # as api.service does: live streams end first
            await hub.close()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sign_in(client: httpx.AsyncClient, username: str = "technician") -> dict[str, str]:
    resp = await client.post("/api/v1/auth/token",
                             data={"username": username, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def record(database_url: str, *names: str, site: str = "tsite") -> list[int]:
    """Record one event per name in one transaction; their ids, ascending."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        async with conn.transaction():
            await events.record(conn, site, [
                AlarmEvent(ts=datetime.now(UTC), event=n, alarm_id=i + 1, device="a-elevator-1")
                for i, n in enumerate(names)])
        cur = await conn.execute("SELECT id FROM events ORDER BY id DESC LIMIT %s", (len(names),))
        return sorted(int(r[0]) for r in await cur.fetchall())


class Reader:
    """Parses SSE messages from a streaming response."""

    def __init__(self, resp: httpx.Response) -> None:
        self.lines = resp.aiter_lines()

    async def next(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"comments": []}
        async with asyncio.timeout(TIMEOUT_S):
            async for line in self.lines:
                if line == "":
                    if set(msg) - {"comments"}:
                        return msg
                    continue
                if line.startswith(":"):
                    msg["comments"].append(line)
                    if len(msg) == 1:
                        return msg
                    continue
                field, _, value = line.partition(": ")
                msg[field] = json.loads(value) if field == "data" else value
        raise AssertionError("stream ended")

    async def event(self) -> dict[str, Any]:
        while "comments" in (msg := await self.next()) and "id" not in msg:
            pass
        return msg
