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
from api.settings import ApiSettings
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


async def test_streams_that_fall_behind_or_resume_from_long_ago_get_every_event_once(
    database_url: str, tmp_path: Path
) -> None:
    """Backlogs of 3 events and 4 kept in memory: a burst of 8 overflows every stream, which
    then resumes from its last id (from the database: the memory has moved past it); a
    stream from ?after=0 starts by reading the database; a site's stream skips other sites."""
    site = seed_site(database_url, tmp_path)
    before = await record(database_url, *["alarm.raised"] * 6)
    settings = ApiSettings(stream_backlog=3, stream_replay=4)
    app = create_app(database_url, site=site, settings=settings)
    async with serving(app) as base_url, contextlib.AsyncExitStack() as streams, \
            httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
        headers = await sign_in(client)
        paths = ["/api/v1/stream?after=0", "/api/v1/stream",
                 f"/api/v1/stream?site=tsite&after={before[3]}"]
        readers = [Reader(await streams.enter_async_context(
            client.stream("GET", path, headers=headers))) for path in paths]
        everything, now, one_site = readers
        for reader in readers:
            assert (await reader.event())["event"] == "ready"
        assert [int((await everything.event())["id"]) for _ in before] == before
        assert [int((await one_site.event())["id"]) for _ in before[4:]] == before[4:]
        elsewhere = await record(database_url, "alarm.raised", site="other")
        burst = await record(database_url, *["alarm.acknowledged"] * 8)
        for reader, expected in ((everything, elsewhere + burst), (now, elsewhere + burst),
                                 (one_site, burst)):
            got = [await reader.event() for _ in expected]
            assert [int(m["id"]) for m in got] == expected
        assert app.state.hub.counters.overflows == 3
        # Nothing more (no event twice): the next message is the one recorded now.
        [last] = await record(database_url, "alarm.cleared")
        for reader in readers:
            assert int((await reader.event())["id"]) == last
