"""Staff and rosters in the database (psycopg async), for the API and the reports.

``sync_directory`` replaces the site's rows of ``dispatch_staff``, ``dispatch_rosters`` and
``dispatch_shifts`` with the loaded dispatch file (one transaction), but for the rosters edited
through the API (``edited_at``), which stay as edited; ``load_rosters`` reads the rosters and
the shift swaps back into the config, so an edit takes effect without a restart; ``refresh_on_call``
writes who is on call now per roster into ``dispatch_on_call`` (rank 0 first), so a page can
show it without the roster logic. ``missing_users`` names staff without an active login."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from rules.dispatch.config import DispatchConfig, Roster, Swap
from rules.dispatch.roster import on_call

log = logging.getLogger(__name__)


async def sync_directory(conn: psycopg.AsyncConnection[Any], site_id: str,
                         config: DispatchConfig) -> None:
    async with conn.transaction():
        cur = await conn.execute("SELECT roster FROM dispatch_rosters WHERE site_id = %s"
                                 " AND edited_at IS NOT NULL", (site_id,))
        edited = {str(r[0]) for r in await cur.fetchall()}
        if edited:
            log.info("rosters edited through the API kept as edited: %s",
                     ", ".join(sorted(edited)))
        rosters = {n: r for n, r in config.rosters.items() if n not in edited}
        for table in ("dispatch_shifts", "dispatch_rosters"):
            await conn.execute(f"DELETE FROM {table} WHERE site_id = %s"
                               " AND NOT (roster = ANY(%s))", (site_id, sorted(edited)))
        await conn.execute("DELETE FROM dispatch_staff WHERE site_id = %s", (site_id,))
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
                  Jsonb(r.model_dump(mode="json"))) for name, r in rosters.items()])
            await cur.executemany(
                "INSERT INTO dispatch_shifts (site_id, roster, seq, name, days, start_time,"
                " end_time, on_call) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(site_id, name, seq, s.name, list(s.days), s.start, s.end, list(s.on_call))
                 for name, r in rosters.items()
                 for seq, s in enumerate(r.shifts, start=1)])


async def load_rosters(conn: psycopg.AsyncConnection[Any], site_id: str,
                       config: DispatchConfig, now: datetime) -> DispatchConfig:
    """The config with the rosters as the database holds them now (the file's, or as edited
    through the API) and the shift swaps not yet over. A roster body that no longer
    validates is logged and the file's version kept."""
    cur = await conn.execute("SELECT roster, body FROM dispatch_rosters WHERE site_id = %s",
                             (site_id,))
    rosters = dict(config.rosters)
    for name, body in await cur.fetchall():
        try:
            rosters[str(name)] = Roster.model_validate(body)
        except ValidationError as exc:
            log.warning("roster %s in the database is not valid, kept the file's: %s",
                        name, exc)
    cur = await conn.execute(
        "SELECT roster, original, substitute, starts_at, ends_at FROM roster_swaps"
        " WHERE site_id = %s AND cancelled_at IS NULL AND ends_at > %s ORDER BY id",
        (site_id, now))
    swaps = tuple(Swap(roster=r[0], original=r[1], substitute=r[2], starts_at=r[3],
                       ends_at=r[4]) for r in await cur.fetchall())
    return config.model_copy(update={"rosters": rosters, "swaps": swaps})


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
