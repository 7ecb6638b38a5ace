"""Live streams for bench/api.py: thousands of SSE clients, each a plain asyncio Protocol on
its own socket (no task and no HTTP library per stream, so the load generator costs little),
each with its own bearer token (written straight into api_tokens, as sign-in would, without
2,000 argon2 checks); probe events recorded in the outbox by the services' own
``facility.events.record``; and when each stream received each probe.

``StreamLoad`` opens the streams (a bounded number of connects at a time), raises a probe every
``interval_s`` until told to stop, then waits for every stream to have every probe and returns
the delays (from just before the probe's commit to its arrival). Run as
``python -m bench.streams URL PORT SITE COUNT`` (what bench/api.py does, so that reading
thousands of sockets does not share a GIL with the route timings), it prints ``ready`` once
every stream is open, probes until a line (or EOF) on stdin, and prints the figures as one
JSON line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import AsyncConnectionPool

from api.tokens import digest
from facility import events
from facility.messages import AlarmEvent

PROBE = "bench.probe"
PROBE_INTERVAL_S = 0.5
PROBES_AT_LEAST = 20
_PROBE = re.compile(rb"id: (\d+)\nevent: bench\.probe")
CONNECTS_AT_ONCE = 50
READY_TIMEOUT_S = 120.0


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files towards ``wanted`` (children started
    afterwards inherit it); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def issue_tokens(url: str, username: str, count: int) -> list[str]:
    """``count`` valid bearer tokens of the user, stored as the API stores them."""
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    expires = datetime.now(UTC) + timedelta(days=1)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM users WHERE username = %s", (username,)).fetchone()
        assert row is not None, username
        with conn.cursor().copy(
                "COPY api_tokens (token_sha256, user_id, expires_at) FROM STDIN") as copy:
            for token in tokens:
                copy.write_row((digest(token), row[0], expires))
    return tokens


class StreamClient(asyncio.Protocol):
    """One ``GET /api/v1/stream``: notes when ``ready`` came and when each probe arrived."""

    def __init__(self, request: bytes, ready: asyncio.Future[None],
                 on_arrival: Callable[[], None]) -> None:
        self._request = request
        self.ready = ready
        self._on_arrival = on_arrival
        self.arrivals: dict[int, float] = {}
        self.open = False
        self._tail = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport, self.open = transport, True
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        text = self._tail + data
        if not self.ready.done():
            if text.startswith(b"HTTP/1.1 ") and not text.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(ConnectionError(text[:200].decode(errors="replace")))
            elif b"event: ready" in text:
                self.ready.set_result(None)
        for match in _PROBE.finditer(text):
            if int(match[1]) not in self.arrivals:
                self.arrivals[int(match[1])] = now
                self._on_arrival()
        self._tail = text[-64:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"stream closed before ready: {exc}"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass(frozen=True, slots=True)
class StreamFigures:
    streams: int
    opened_s: float
    probes: int
    delays_ms: list[float]
    missed: int  # (stream, probe) pairs that never arrived
    closed_by_server: int


class StreamLoad:
    def __init__(self, url: str, host: str, port: int, site: str) -> None:
        self._url, self._host, self._port, self._site = url, host, port, site
        self.clients: list[StreamClient] = []
        self._probes: list[tuple[int, float]] = []
        self.opened_s = 0.0
        self._arrived = 0
        self._expected: int | None = None
        self._all_arrived = asyncio.Event()

    def _count_arrival(self) -> None:
        self._arrived += 1
        if self._expected is not None and self._arrived >= self._expected:
            self._all_arrived.set()

    async def open(self, count: int, username: str) -> None:
        tokens = await asyncio.to_thread(issue_tokens, self._url, username, count)
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        t0 = time.perf_counter()
        self.clients = list(await asyncio.gather(*(self._open_one(t, gate) for t in tokens)))
        self.opened_s = time.perf_counter() - t0

    async def _open_one(self, token: str, gate: asyncio.Semaphore) -> StreamClient:
        request = (f"GET /api/v1/stream HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                   f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n").encode()
        async with gate:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            _, client = await asyncio.get_running_loop().create_connection(
                lambda: StreamClient(request, ready, self._count_arrival), self._host, self._port)
            async with asyncio.timeout(READY_TIMEOUT_S):
                await ready
        return client

    async def probe_until(self, stop: asyncio.Event, interval_s: float, at_least: int) -> None:
        """Raise a probe event every ``interval_s`` until ``stop`` is set and ``at_least``
        were raised."""
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            while not stop.is_set() or len(self._probes) < at_least:
                t0 = time.perf_counter()
                async with conn.transaction():
                    await events.record(conn, self._site, [
                        AlarmEvent(ts=datetime.now(UTC), event=PROBE)])
                cur = await conn.execute("SELECT max(id) FROM events WHERE kind = %s", (PROBE,))
                row = await cur.fetchone()
                assert row is not None
                self._probes.append((int(row[0]), t0))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval_s):
                        await stop.wait()

    async def figures(self, timeout_s: float = 30.0) -> StreamFigures:
        """Wait (up to ``timeout_s``) for every stream to have every probe, then close them."""
        ids = [probe_id for probe_id, _ in self._probes]
        self._expected = len(ids) * len(self.clients)
        if self._arrived >= self._expected:
            self._all_arrived.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._all_arrived.wait()
        delays = [(c.arrivals[i] - t0) * 1000 for c in self.clients for i, t0 in self._probes
                  if i in c.arrivals]
        closed = sum(not c.open for c in self.clients)
        for client in self.clients:
            client.close()
        return StreamFigures(streams=len(self.clients), opened_s=self.opened_s,
                             probes=len(ids), delays_ms=delays,
                             missed=len(ids) * len(self.clients) - len(delays),
                             closed_by_server=closed)


async def naive_event_reads_s(url: str, streams: int, pool_size: int) -> float:
    """The naive baseline: how long one event keeps a pool of ``pool_size`` busy when every
    stream reads it with its own query (what the API did before its event hub)."""
    async with AsyncConnectionPool(url, min_size=pool_size, max_size=pool_size,
                                   kwargs={"autocommit": True}, open=False) as pool:
        await pool.wait()
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(id), 0) FROM events")
            row = await cur.fetchone()
        last = int(row[0]) - 1 if row else 0

        async def one() -> None:
            async with pool.connection() as conn:
                await events.since(conn, last, limit=500)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(streams)))
        return time.perf_counter() - t0


async def _hold(url: str, port: int, site: str, count: int) -> StreamFigures:
    load = StreamLoad(url, "127.0.0.1", port, site)
    await load.open(count, "operator")
    print(f"ready {load.opened_s:.2f}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # a line or EOF
    await load.probe_until(stop, PROBE_INTERVAL_S, PROBES_AT_LEAST)
    return await load.figures()


def main() -> None:
    url, port, site, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    raise_fd_limit(count + 1024)
    print(json.dumps(asdict(asyncio.run(_hold(url, port, site, count)))), flush=True)


if __name__ == "__main__":
    main()
