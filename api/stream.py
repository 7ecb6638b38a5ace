"""The live stream behind ``GET /api/v1/stream``: Server-Sent Events of the event outbox.

``EventHub`` keeps ONE database connection that LISTENs on ``facility_events`` for the whole
app and wakes every waiting stream when a notification arrives (a generation counter, so a
notification that lands between a stream's query and its wait is never lost); if that
connection drops it reconnects with capped backoff, and streams still catch up on their
heartbeat timer meanwhile. ``event_stream`` is one client's loop: read the events after its
cursor from a pooled connection (oldest first, in batches), send each with ``id:`` = events.id,
then wait for a wake-up or send a heartbeat comment. Ids are visible in commit order
(migration 0008), so resuming from the last id seen never skips an event. At least once per
heartbeat period the stream asks ``still_valid`` (is the client's token still good?) and, once
it is revoked or expired, sends a ``signed_out`` event and ends. ``format_event`` and
``parse_cursor`` are pure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from facility import events
from facility.db.connect import connect

log = logging.getLogger(__name__)
BATCH = 500
RETRY_MS = 3000
SIGNED_OUT = 'event: signed_out\ndata: {"reason": "token revoked or expired"}\n\n'
MAX_BACKOFF_S = 30.0


def format_event(event_id: int, kind: str, data: dict[str, Any]) -> str:
    """One SSE message: ``id``, ``event`` and a one-line JSON ``data``."""
    body = json.dumps({"id": event_id, "kind": kind, **data}, ensure_ascii=False,
                      separators=(",", ":"))
    return f"id: {event_id}\nevent: {kind}\ndata: {body}\n\n"


def parse_cursor(last_event_id: str | None, after: int | None) -> int | None:
    """Where to resume: the Last-Event-ID header wins over ``?after=``; None means 'now'.
    A header that is not a non-negative integer is ignored (a browser sends back what it was
    given, so only a foreign client can send garbage)."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return after


class EventHub:
    """Wakes streams when PostgreSQL notifies ``facility_events``."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._generation = 0
        self._changed = asyncio.Condition()
        self.connected = False
        self.closing = False  # set at shutdown: every stream ends at its next wake-up

    @property
    def generation(self) -> int:
        return self._generation

    async def wait(self, seen: int, timeout_s: float) -> bool:
        """True once the generation moved past ``seen``; False after ``timeout_s``."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._changed.wait_for(lambda: self._generation != seen)
            except TimeoutError:
                return False
        return True

    async def close(self) -> None:
        """End every live stream now (server shutdown), so each response finishes cleanly."""
        self.closing = True
        await self._bump()

    async def _bump(self) -> None:
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

    async def run(self) -> None:
        """LISTEN until cancelled, reconnecting with capped, jittered backoff."""
        backoff_s = 0.5
        while True:
            try:
                async with await connect(self._url, application_name="api-events") as conn:
                    await conn.execute(f"LISTEN {events.CHANNEL}")
                    if not self.connected:
                        log.info("event hub listening on %s", events.CHANNEL)
                    self.connected, backoff_s = True, 0.5
                    await self._bump()  # catch up on anything missed while away
                    async for _ in conn.notifies():
                        await self._bump()
            except psycopg.Error as exc:
                if self.connected:
                    log.warning("event hub lost its database connection: %s", exc)
                self.connected = False
            await asyncio.sleep(backoff_s * random.uniform(0.8, 1.2))
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)


async def _latest_id(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT coalesce(max(id), 0) FROM events")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def event_stream(
    pool: AsyncConnectionPool[Any], hub: EventHub, *, cursor: int | None, site: str | None,
    heartbeat_s: float, still_valid: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[str]:
    """The SSE text of one client until the client goes, its token stops being valid or
    the hub closes (shutdown)."""
    last = await _latest_id(pool) if cursor is None else cursor
    # Tell the client where it starts; a page loads its snapshot after this.
    yield f"retry: {RETRY_MS}\nid: {last}\nevent: ready\ndata: {json.dumps({'id': last})}\n\n"
    loop = asyncio.get_running_loop()
    check_at = loop.time() + heartbeat_s
    while not hub.closing:
        if still_valid is not None and loop.time() >= check_at:
            if not await still_valid():
                yield SIGNED_OUT
                return
            check_at = loop.time() + heartbeat_s
        seen = hub.generation
        async with pool.connection() as conn:
            rows = await events.since(conn, last, site_id=site, limit=BATCH)
        for event_id, kind, payload in rows:
            yield format_event(event_id, kind, payload)
            last = event_id
        if len(rows) == BATCH:
            continue
        if not await hub.wait(seen, heartbeat_s):
            yield ": heartbeat\n\n"


@contextlib.asynccontextmanager
async def running_hub(database_url: str) -> AsyncIterator[EventHub]:
    """An EventHub listening in a background task for the duration of the block."""
    hub = EventHub(database_url)
    task = asyncio.create_task(hub.run(), name="event-hub")
    try:
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
