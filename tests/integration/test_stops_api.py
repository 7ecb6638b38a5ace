"""Issue 17: at shutdown the API ends its live streams cleanly (the response is complete,
not cut when the grace runs out) and stops."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from api.service import serve_api
from facility.ports import free_port
from facility.users import ensure_demo_users
from tests.integration.api_support import PASSWORD


async def test_a_live_stream_ends_cleanly_when_the_api_stops(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        ensure_demo_users(conn, PASSWORD)
    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(serve_api(database_url, "127.0.0.1", port, ready=ready))
    async with asyncio.timeout(30):
        await ready.wait()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        token = (await client.post("/api/v1/auth/token", data={
            "username": "operator", "password": PASSWORD})).json()["access_token"]
        async with client.stream("GET", "/api/v1/stream",
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
            lines = resp.aiter_lines()
            async with asyncio.timeout(30):
                while "event: ready" not in await anext(lines):
                    pass
            server.cancel()
            async with asyncio.timeout(30):
                rest = [line async for line in lines]  # the body ends, complete
    assert not any(line.startswith("event:") for line in rest)  # nothing after the ready
    with pytest.raises(asyncio.CancelledError):
        await server
