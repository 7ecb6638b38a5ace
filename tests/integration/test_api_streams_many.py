"""Issue 20: live pages at a monitoring centre's scale, over real sockets (uvicorn on a
loopback port) and a real PostgreSQL, with the pool at its normal size. Many open streams
hold no database connection, so the other routes keep answering; every stream receives a
newly raised event. A stream that falls behind (its backlog overflows) and one that resumes
from before what the hub keeps in memory both get every event, in order, once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx

from api.app import POOL_MAX_SIZE, create_app
from tests.integration.api_support import seed_site
from tests.integration.stream_support import TIMEOUT_S, Reader, record, serving, sign_in

STREAMS = 120


async def test_many_streams_hold_no_connection_and_each_gets_a_new_event(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(database_url, site=seed_site(database_url, tmp_path))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with serving(app) as base_url, contextlib.AsyncExitStack() as streams, \
            httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S, limits=limits) as client:
        headers = await sign_in(client)
        readers = []
        for _ in range(STREAMS):
            resp = await streams.enter_async_context(
                client.stream("GET", "/api/v1/stream", headers=headers))
            assert resp.status_code == 200
            readers.append(Reader(resp))
        assert {m["event"] for m in await asyncio.gather(*(r.event() for r in readers))} == {
            "ready"}
        # Every stream is open and none holds a pooled connection.
        stats = app.state.pool.get_stats()
        assert stats["pool_size"] <= POOL_MAX_SIZE
        assert stats["pool_size"] - stats["pool_available"] == 0, stats
        resp = await client.get("/api/v1/alarms", headers=headers)
        assert resp.status_code == 200, resp.text
        [new] = await record(database_url, "alarm.raised")
        got = await asyncio.gather(*(r.event() for r in readers))
        assert [m["id"] for m in got] == [str(new)] * STREAMS
        assert {m["event"] for m in got} == {"alarm.raised"}
