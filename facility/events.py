"""The event outbox: alarm, work-order and device-status events recorded in the ``events``
table inside the transaction that made the change, so the API's live stream (SSE) sees
exactly what was committed, in order, and a reconnecting page resumes from its last id.
PostgreSQL notifies channel ``facility_events`` with each new id on commit. The outbox relay
(``rules.relay``) reads the alarm and work-order events after its per-site watermark
(``outbox_relay``) and publishes them on MQTT."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.messages import AlarmEvent
from facility.scope import Scope

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


# The building an event is about (issue 23: a user may see some buildings of a site only):
# its device's, or for a repair request's order the building the desk wrote down; NULL when
# the event is about the site as a whole.
_BUILDING = """
coalesce((SELECT d.building FROM devices d WHERE d.name = e.payload ->> 'device'),
         (SELECT w.requester ->> 'building' FROM work_orders w WHERE w.device_id IS NULL
          AND w.id = (e.payload ->> 'work_order_id')::bigint))
"""
_IN_SCOPE = ("(%(scope_all)s OR e.site_id = ANY(%(scope_sites)s::text[])"
             " OR (e.site_id || '/' || " + _BUILDING + ") = ANY(%(scope_bldgs)s::text[]))")


async def since(
    conn: psycopg.AsyncConnection[Any], after_id: int, *, site_id: str | None = None,
    until_id: int | None = None, limit: int = 1000, scope: Scope | None = None,
) -> list[tuple[int, str, dict[str, Any]]]:
    """Events with after_id < id <= until_id (no upper bound when None), oldest first:
    (id, kind, payload); only those in ``scope`` (facility.scope) when one is given."""
    cur = await conn.execute(
        "SELECT e.id, e.kind, e.payload FROM events e WHERE e.id > %(after)s"
        " AND (%(until)s::bigint IS NULL OR e.id <= %(until)s)"
        " AND (%(site)s::text IS NULL OR e.site_id = %(site)s) AND " + _IN_SCOPE
        + " ORDER BY e.id LIMIT %(limit)s",
        {"after": after_id, "until": until_id, "site": site_id, "limit": limit,
         **(scope or Scope()).params()},
    )
    return [(int(r[0]), str(r[1]), dict(r[2])) for r in await cur.fetchall()]


SiteEvent = tuple[int, str, str | None, str, dict[str, Any]]
"""(id, site_id, building or None, kind, payload)"""


def _site_events(rows: list[tuple[Any, ...]]) -> list[SiteEvent]:
    return [(int(r[0]), str(r[1]), r[2], str(r[3]), dict(r[4])) for r in rows]


async def every_site_since(
    conn: psycopg.AsyncConnection[Any], after_id: int, limit: int,
) -> list[SiteEvent]:
    """Every site's events with id > after_id, oldest first (the API's event hub)."""
    cur = await conn.execute(
        "SELECT e.id, e.site_id, " + _BUILDING + ", e.kind, e.payload FROM events e"
        " WHERE e.id > %s ORDER BY e.id LIMIT %s", (after_id, limit))
    return _site_events(await cur.fetchall())


async def latest(conn: psycopg.AsyncConnection[Any], limit: int) -> list[SiteEvent]:
    """The newest ``limit`` events of every site, oldest first."""
    cur = await conn.execute(
        "SELECT e.id, e.site_id, " + _BUILDING + ", e.kind, e.payload FROM (SELECT * FROM"
        " events ORDER BY id DESC LIMIT %s) e ORDER BY e.id", (limit,))
    return _site_events(await cur.fetchall())


RELAYED = ("alarm.", "work_order.")  # the kinds the outbox relay publishes on MQTT


async def relay_watermark(conn: psycopg.AsyncConnection[Any], site_id: str) -> int:
    """The last event id of the site the relay had acknowledged by the broker (0: none)."""
    cur = await conn.execute(
        "SELECT published_id FROM outbox_relay WHERE site_id = %s", (site_id,))
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def to_relay(
    conn: psycopg.AsyncConnection[Any], site_id: str, after_id: int, limit: int,
) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """The site's alarm and work-order events after ``after_id`` in id order (at most
    ``limit``), and the last id read (other kinds are read past, not returned)."""
    cur = await conn.execute(
        "SELECT id, kind, payload FROM events WHERE site_id = %s AND id > %s ORDER BY id"
        " LIMIT %s", (site_id, after_id, limit))
    rows = await cur.fetchall()
    last = int(rows[-1][0]) if rows else after_id
    return [(int(r[0]), dict(r[2])) for r in rows if str(r[1]).startswith(RELAYED)], last


async def set_relay_watermark(
    conn: psycopg.AsyncConnection[Any], site_id: str, published_id: int,
) -> None:
    await conn.execute(
        "INSERT INTO outbox_relay (site_id, published_id, updated_at) VALUES (%s, %s, now())"
        " ON CONFLICT (site_id) DO UPDATE SET published_id = GREATEST("
        "outbox_relay.published_id, EXCLUDED.published_id), updated_at = now()",
        (site_id, published_id))
