"""The rules' one database connection and what to do when it fails: ``DatabaseGuard`` tells
an outage (the server cannot be reached, or the connection broke) from a refusal (the
server refused what was asked), holds and retries through an outage with capped backoff
(the message being handled stays unacknowledged meanwhile, so nothing accepted is lost),
reconnects a broken connection, and logs the outage once and the recovery once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_MIN_S, RETRY_MAX_S = 0.2, 5.0  # backoff while the database is unreachable


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
        """The database cannot be reached (as opposed to refusing what we asked)."""
        return isinstance(exc, psycopg.OperationalError) or self.conn.broken or self.conn.closed

    def back(self) -> None:
        if self._down_since is not None:
            log.info("database back after %.1f s; rules resume",
                     asyncio.get_running_loop().time() - self._down_since)
            self._down_since = None

    async def lost(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            log.warning("database unreachable (%s): holding messages, unacknowledged, and "
                        "retrying until it is back", str(exc).strip() or type(exc).__name__)
        await self.reconnect_if_broken(quiet=True)

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
                self.failure = str(exc).strip() or type(exc).__name__
                if attempt >= attempts:
                    log.exception("%s failed", what)
                    return None
                attempt += 1
                await asyncio.sleep(RETRY_MIN_S * attempt)
                continue
            self.back()
            return result

    async def reconnect_if_broken(self, *, quiet: bool = False) -> None:
        if self.conn.closed or self.conn.broken:
            if not quiet:
                log.warning("database connection lost; reconnecting")
            try:
                async with asyncio.timeout(10):
                    conn = await psycopg.AsyncConnection.connect(
                        self._database_url, autocommit=True)
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
