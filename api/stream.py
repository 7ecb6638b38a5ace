"""One client's live stream behind ``GET /api/v1/stream``: Server-Sent Events of the event
outbox, fed by the process's event hub (api.event_hub).

``event_stream`` subscribes to the hub, says where it starts (``ready``), then sends what the
hub puts in its backlog, with ``id:`` = events.id, or a heartbeat comment after a heartbeat
period of nothing. It holds no database connection while it waits: the hub reads the outbox
once for every stream. A stream that resumes from before the events the hub keeps in memory
reads the gap from the database first, in batches, taking a pooled connection for each query
only and at most ``CATCH_UP_READERS`` streams at a time. A stream whose backlog overflowed (its
client stopped reading) resumes from the last id it sent, from the hub's memory or the
database, so nothing is lost or sent twice. Ids are visible in commit order (migration 0008),
so resuming after the last id seen never skips an event. The stream ends, after a
``signed_out`` message, once the hub finds its token revoked or expired, and at once, with
nothing more, when the hub closes (shutdown)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api.event_hub import BATCH, EventHub
from api.sse import HEARTBEAT, SIGNED_OUT, format_event, ready
from facility import events
from facility.scope import Scope

log = logging.getLogger(__name__)


async def event_stream(
    pool: AsyncConnectionPool[Any], hub: EventHub, *, after: int | None, site: str | None,
    token_digest: bytes, client: str, scope: Scope | None = None,
) -> AsyncIterator[bytes]:
    """The SSE bytes of one client until the client goes, its token stops being valid or
    the hub closes (shutdown); only the events of ``scope`` (the user's: facility.scope).
    ``client`` names it in the log."""
    sub = hub.subscribe(after, site, token_digest, scope)
    last = sub.start
    fell_behind = 0
    try:
        yield ready(last)
        while True:
            if sub.catch_up_to is not None:
                until, sub.catch_up_to = sub.catch_up_to, None
                async for chunk, upto in _catch_up(pool, hub, last, until, site, sub.scope):
                    yield chunk
                    last = upto
            if not await sub.wait(hub.limits.heartbeat_s):
                yield HEARTBEAT
                continue
            if sub.ended is not None:
                if sub.ended == "signed_out":
                    yield SIGNED_OUT
                return
            fresh = [e for e in sub.take() if e.id > last]
            if fresh:
                yield b"".join(e.text for e in fresh)
                last = fresh[-1].id
            if sub.overflowed:
                fell_behind += 1
                if fell_behind == 1:  # once per stream; the hub counts every time
                    log.warning("live stream of %s fell %d events behind; it resumes from"
                                " event %d", client, hub.limits.backlog, last)
                hub.unsubscribe(sub)
                sub = hub.subscribe(last, site, token_digest, scope)
    finally:
        hub.unsubscribe(sub)


async def _catch_up(
    pool: AsyncConnectionPool[Any], hub: EventHub, after: int, until: int, site: str | None,
    scope: Scope,
) -> AsyncIterator[tuple[bytes, int]]:
    """The events in (after, until] of the scope from the database, a batch at a time, each
    with the last id in it; the connection is given back before the batch is sent."""
    while after < until:
        async with hub.catch_up_slots, pool.connection() as conn:
            rows = await events.since(conn, after, site_id=site, until_id=until, limit=BATCH,
                                      scope=scope)
        if not rows:
            return
        after = rows[-1][0]
        yield "".join(format_event(*row) for row in rows).encode(), after
        if len(rows) < BATCH:
            return
