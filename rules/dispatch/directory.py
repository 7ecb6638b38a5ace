"""Staff and rosters in the database (psycopg async), for the API and the reports.

``sync_directory`` replaces the site's rows of ``dispatch_staff``, ``dispatch_rosters`` and
``dispatch_shifts`` with the loaded dispatch file (one transaction); ``refresh_on_call``
writes who is on call now per roster into ``dispatch_on_call`` (rank 0 first), so a page can
show it without the roster logic. ``missing_users`` names staff without an active login."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rules.dispatch.config import DispatchConfig
from rules.dispatch.roster import on_call


async def sync_directory(conn: psycopg.AsyncConnection[Any], site_id: str,
                         config: DispatchConfig) -> None:
    async with conn.transaction():
        for table in ("dispatch_shifts", "dispatch_rosters", "dispatch_staff"):
            await conn.execute(f"DELETE FROM {table} WHERE site_id = %s", (site_id,))
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO dispatch_staff (site_id, username, display_name, mobile, email,"
                " channels) VALUES (%s, %s, %s, %s, %s, %s)",
                [(site_id, s.username, s.name, s.mobile, s.email, list(s.channels))
                 for s in config.staff])
            await cur.executemany(
                "INSERT INTO dispatch_rosters (site_id, roster, timezone, backup, channels, body)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [(site_id, name, config.timezone, list(r.backup), list(r.channels),
                  Jsonb(r.model_dump(mode="json"))) for name, r in config.rosters.items()])
            await cur.executemany(
                "INSERT INTO dispatch_shifts (site_id, roster, seq, name, days, start_time,"
                " end_time, on_call) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(site_id, name, seq, s.name, list(s.days), s.start, s.end, list(s.on_call))
                 for name, r in config.rosters.items()
                 for seq, s in enumerate(r.shifts, start=1)])


async def refresh_on_call(conn: psycopg.AsyncConnection[Any], site_id: str,
                          config: DispatchConfig, now: datetime) -> None:
    rows = [(site_id, name, rank, oc.username, oc.shift, oc.since, oc.until, now)
            for name in config.rosters
            for rank, oc in enumerate(on_call(config, name, now))]
    async with conn.transaction():
        await conn.execute("DELETE FROM dispatch_on_call WHERE site_id = %s", (site_id,))
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO dispatch_on_call (site_id, roster, rank, username, shift, since,"
                " until, computed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)


async def missing_users(conn: psycopg.AsyncConnection[Any], config: DispatchConfig
                        ) -> list[str]:
    cur = await conn.execute("SELECT username FROM users WHERE active AND username = ANY(%s)",
                             ([s.username for s in config.staff],))
    found = {r[0] for r in await cur.fetchall()}
    return [s.username for s in config.staff if s.username not in found]
