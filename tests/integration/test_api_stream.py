"""The live stream GET /api/v1/stream over a real socket (uvicorn on a loopback port) and a
real PostgreSQL: events recorded in the outbox arrive as SSE messages with ``id:`` = the
outbox id, woken by NOTIFY; a client that reconnects with Last-Event-ID (or ?after=) gets
exactly what it missed; idle streams get heartbeat comments; a stream ends (after a
``signed_out`` event) once its token is revoked or expires; and event writers are serialised
until commit (migration 0008), so ids become visible in increasing order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from api.app import create_app
from api.settings import ApiSettings
from api.tokens import digest
from facility import events
from facility.messages import AlarmEvent
from tests.integration.api_support import run_sql, seed_site
from tests.integration.stream_support import TIMEOUT_S, Reader, record, serving, sign_in


@pytest.fixture
async def base_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    site = seed_site(database_url, tmp_path)
    app = create_app(database_url, site=site, settings=ApiSettings(stream_heartbeat_s=0.3))
    async with serving(app) as url:
        yield url


async def test_events_arrive_live_and_resume_without_gaps(
    base_url: str, database_url: str
) -> None:
    earlier = await record(database_url, "alarm.raised")
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
        headers = await sign_in(client)
        async with client.stream("GET", "/api/v1/stream", headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            reader = Reader(resp)
            ready = await reader.event()
            assert ready["event"] == "ready" and ready["id"] == str(earlier[0])  # starts now
            first = await record(database_url, "alarm.acknowledged", "work_order.created")
            got = [await reader.event(), await reader.event()]
            assert [m["id"] for m in got] == [str(i) for i in first]
            assert [m["event"] for m in got] == ["alarm.acknowledged", "work_order.created"]
            assert got[0]["data"]["device"] == "a-elevator-1"
            assert got[0]["data"]["id"] == first[0]
        # Disconnected: two events happen; the page resumes from the last id it saw.
        missed = await record(database_url, "alarm.cleared", "work_order.accepted")
        resume = {**headers, "Last-Event-ID": got[-1]["id"]}
        async with client.stream("GET", "/api/v1/stream", headers=resume) as resp:
            reader = Reader(resp)
            assert (await reader.event())["event"] == "ready"
            again = [await reader.event(), await reader.event()]
            assert [int(m["id"]) for m in again] == missed
        async with client.stream("GET", "/api/v1/stream?after=0", headers=headers) as resp:
            reader = Reader(resp)
            assert (await reader.event())["event"] == "ready"
            everything = [int((await reader.event())["id"]) for _ in range(5)]
            assert everything == earlier + first + missed


async def test_idle_stream_sends_heartbeats(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
        headers = await sign_in(client)
        async with client.stream("GET", "/api/v1/stream", headers=headers) as resp:
            reader = Reader(resp)
            assert (await reader.event())["event"] == "ready"
            beat = await reader.next()
            assert beat == {"comments": [": heartbeat"]}


async def test_event_writers_are_serialised_until_commit(database_url: str) -> None:
    """A second writer cannot take an id while the first has not committed, so a reader that
    saw id N can never later find a smaller id appear."""
    async with await psycopg.AsyncConnection.connect(database_url) as first, \
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as second:
        msg = AlarmEvent(ts=datetime.now(UTC), event="alarm.raised")
        await events.record(first, "tsite", [msg])  # transaction open, not committed
        await second.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await events.record(second, "tsite", [msg])
        await first.commit()
        await events.record(second, "tsite", [msg])
        cur = await second.execute("SELECT id FROM events ORDER BY id")
        assert len(await cur.fetchall()) == 2


async def _ends_signed_out(reader: Reader) -> None:
    """The stream sends heartbeats, then ``signed_out``, then ends."""
    msg = await reader.next()
    while msg == {"comments": [": heartbeat"]}:
        msg = await reader.next()
    assert msg["event"] == "signed_out", msg
    assert msg["data"] == {"reason": "token revoked or expired"}
    with pytest.raises(AssertionError, match="stream ended"):
        await reader.next()


async def test_stream_ends_when_its_token_is_revoked_or_expires(
    base_url: str, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
        signed_out, expiring, kept = [await sign_in(client) for _ in range(3)]
        async with client.stream("GET", "/api/v1/stream", headers=signed_out) as first, \
                client.stream("GET", "/api/v1/stream", headers=expiring) as second, \
                client.stream("GET", "/api/v1/stream", headers=kept) as third:
            readers = [Reader(first), Reader(second), Reader(third)]
            for reader in readers:
                assert (await reader.event())["event"] == "ready"
            resp = await client.post("/api/v1/auth/sign-out", headers=signed_out)
            assert resp.status_code == 204
            token = expiring["Authorization"].removeprefix("Bearer ")
            run_sql(database_url, "UPDATE api_tokens SET expires_at = now()"
                    " WHERE token_sha256 = %s", (digest(token),))
            await _ends_signed_out(readers[0])
            await _ends_signed_out(readers[1])
            # The third token is still good: its stream goes on.
            assert (await record(database_url, "alarm.raised"))[0] == int(
                (await readers[2].event())["id"])
