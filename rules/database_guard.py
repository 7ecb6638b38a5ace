"""The rules' one database connection and what to do when it fails: ``DatabaseGuard`` tells
an outage from a refusal (``facility.db.outage``: unreachable, connection broken, the server
shutting down, or a standby answering "read-only transaction" during a failover, are all
outages), holds and retries through an outage with capped backoff (the message being
handled stays unacknowledged meanwhile, so nothing accepted is lost), replaces the
connection on every outage (a standby's connection is healthy but useless: the new one goes
to the primary through ``target_session_attrs=read-write``), and logs the outage once and
the recovery once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

from facility.db.connect import connect
from facility.db.outage import describe, is_outage

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_MIN_S, RETRY_MAX_S = 0.2, 2.0  # backoff while no primary is reachable
RECONNECT_TIMEOUT_S = 15.0  # every host of a multi-host URL, each within connect_timeout


class DatabaseGuard:
    """The connection (replaced on reconnect), whether the database is up, and why the last
    write was refused (``failure``)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], database_url: str = "") -> None:
        self.conn = conn
        # psycopg's conn.info.dsn has no password: reconnect with the URL we were given
        self._database_url = database_url or conn.info.dsn
        self._down_since: float | None = None
        self.failure = ""

    @property
    def up(self) -> bool:
        """False while work is held because the database is unreachable."""
        return self._down_since is None

    def unavailable(self, exc: BaseException) -> bool:
        """No primary reachable right now (as opposed to refusing what we asked)."""
        return is_outage(exc) or self.conn.broken or self.conn.closed

    def back(self) -> None:
        if self._down_since is not None:
            log.info("database back after %.1f s; rules resume",
                     asyncio.get_running_loop().time() - self._down_since)
            self._down_since = None

    async def lost(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            log.warning("database unreachable or not the primary (%s): holding messages, "
                        "unacknowledged, and retrying until a primary is back", describe(exc))
        await self.reconnect(quiet=True)

    async def until_stored(self, write: Callable[[], Awaitable[T]], what: str, *,
                           attempts: int = 1) -> T | None:
        """``write()``, retried with backoff while the database is unreachable (the message
        stays unacknowledged meanwhile); None, logged, if the database refuses it
        ``attempts`` times."""
        delay = RETRY_MIN_S
        attempt = 1
        while True:
            try:
                result = await write()
            except psycopg.Error as exc:
                if self.unavailable(exc):
                    await self.lost(exc)
                    delay = await backoff(delay)
                    continue
                self.failure = describe(exc)
                if attempt >= attempts:
                    log.exception("%s failed", what)
                    return None
                attempt += 1
                await asyncio.sleep(RETRY_MIN_S * attempt)
                continue
            self.back()
            return result

    async def reconnect(self, *, quiet: bool = False) -> None:
        """A new connection to the primary in place of the current one (kept if no new
        one can be made: the next write fails and brings us back here)."""
        if not quiet:
            log.warning("database connection lost; reconnecting")
        try:
            async with asyncio.timeout(RECONNECT_TIMEOUT_S):
                conn = await connect(self._database_url, application_name="rules")
        except (psycopg.Error, TimeoutError) as exc:
            (log.debug if quiet else log.warning)("database reconnect failed: %s", exc)
            return
        with contextlib.suppress(psycopg.Error):
            await self.conn.close()
        self.conn = conn


async def backoff(delay: float) -> float:
    """Wait ``delay`` seconds; the next delay (doubled, at most RETRY_MAX_S)."""
    await asyncio.sleep(delay)
    return min(delay * 2, RETRY_MAX_S)
