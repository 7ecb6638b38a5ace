"""The event outbox: alarm, work-order and device-status events recorded in the ``events``
table inside the transaction that made the change, so the API's live stream (SSE) sees
exactly what was committed, in order, and a reconnecting page resumes from its last id.
PostgreSQL notifies channel ``facility_events`` with each new id on commit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.messages import AlarmEvent

CHANNEL = "facility_events"


async def record(
    conn: psycopg.AsyncConnection[Any], site_id: str, events: Iterable[AlarmEvent],
) -> None:
    """Insert the events (in the caller's transaction); kind is the event's name."""
    rows = [(e.ts, site_id, e.event, Jsonb(e.model_dump(mode="json", exclude_none=True)))
            for e in events]
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO events (time, site_id, kind, payload) VALUES (%s, %s, %s, %s)", rows,
        )


async def since(
    conn: psycopg.AsyncConnection[Any], after_id: int, *, site_id: str | None = None,
    limit: int = 1000,
) -> list[tuple[int, str, dict[str, Any]]]:
    """Events with id > after_id, oldest first: (id, kind, payload)."""
    cur = await conn.execute(
        "SELECT id, kind, payload FROM events WHERE id > %s"
        " AND (%s::text IS NULL OR site_id = %s) ORDER BY id LIMIT %s",
        (after_id, site_id, site_id, limit),
    )
    return [(int(r[0]), str(r[1]), dict(r[2])) for r in await cur.fetchall()]
