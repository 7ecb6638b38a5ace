"""Writes one batch of decoded messages to PostgreSQL in one transaction, and keeps trying
until it is committed; the caller acknowledges the batch's messages only afterwards.

Telemetry goes by binary COPY into a temporary staging table, then ``INSERT ... SELECT ...
ON CONFLICT (point_id, time) DO NOTHING`` (a redelivered message is stored once) and an
upsert of latest_values that only moves forward in time. Device status is upserted newer-only
with a history row; gateway status follows the session rule (see ``UPSERT_GATEWAY``); dead
letters are inserted in the same transaction. While the database is unreachable the batch is
kept and retried with capped, jittered exponential backoff, logged once when it goes and once
when it is back. If the database refuses the batch's data (a data or integrity error), the
messages are written one by one and the ones it refuses become dead letters, so one poison
message cannot stop ingest."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from ingest.rows import DeadLetter, DeadLetterKind, Decoded, dead_letter

log = logging.getLogger(__name__)
CONSUMER = "ingest"

CREATE_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage (time timestamptz NOT NULL,"
    " point_id integer NOT NULL, value double precision, value_text text,"
    " quality smallint NOT NULL) ON COMMIT DELETE ROWS"
)
COPY_STAGE = (
    "COPY telemetry_stage (time, point_id, value, value_text, quality) FROM STDIN (FORMAT BINARY)"
)
STAGE_TYPES = ["timestamptz", "int4", "float8", "text", "int2"]
INSERT_TELEMETRY = (
    "INSERT INTO telemetry (time, point_id, value, value_text, quality)"
    " SELECT time, point_id, value, value_text, quality FROM telemetry_stage"
    " ON CONFLICT (point_id, time) DO NOTHING"
)
UPSERT_LATEST = (
    "INSERT INTO latest_values (point_id, time, value, value_text, quality)"
    " SELECT DISTINCT ON (point_id) point_id, time, value, value_text, quality"
    " FROM telemetry_stage ORDER BY point_id, time DESC"
    " ON CONFLICT (point_id) DO UPDATE SET time = EXCLUDED.time, value = EXCLUDED.value,"
    " value_text = EXCLUDED.value_text, quality = EXCLUDED.quality"
    " WHERE latest_values.time < EXCLUDED.time"
)
UPSERT_DEVICE_STATUS = (
    "INSERT INTO device_status (device_id, state, reason, time) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (device_id) DO UPDATE SET state = EXCLUDED.state,"
    " reason = EXCLUDED.reason, time = EXCLUDED.time WHERE device_status.time < EXCLUDED.time"
)
INSERT_DEVICE_HISTORY = (
    "INSERT INTO device_status_history (device_id, time, state, reason)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (device_id, time) DO NOTHING"
)
# The gateway's will says offline with the session of its birth, and its ts may predate the
# birth's, so: a death of the stored session always applies; otherwise only a newer message
# applies, and never an offline of another session over an online one (a stale will of an
# earlier connection must not mark a reconnected gateway offline).
UPSERT_GATEWAY = (
    "INSERT INTO gateway_status (site_id, gateway, state, session, time)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (site_id, gateway) DO UPDATE"
    " SET state = EXCLUDED.state, session = EXCLUDED.session, time = EXCLUDED.time"
    " WHERE (gateway_status.session = EXCLUDED.session"
    "        AND (EXCLUDED.state = 'offline'"
    "             OR (gateway_status.state = 'online' AND gateway_status.time < EXCLUDED.time)))"
    "    OR (gateway_status.session <> EXCLUDED.session"
    "        AND gateway_status.time < EXCLUDED.time"
    "        AND NOT (gateway_status.state = 'online' AND EXCLUDED.state = 'offline'))"
)
INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (consumer, topic, payload, reason) VALUES (%s, %s, %s, %s)"
)
_REFUSED = (psycopg.DataError, psycopg.IntegrityError)


@dataclass(frozen=True, slots=True)
class Item:
    """One received message and what it decoded to."""

    topic: str
    payload: bytes
    decoded: Decoded


@dataclass(slots=True)
class WriteResult:
    telemetry_staged: int = 0
    telemetry_inserted: int = 0
    statuses: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def add(self, other: WriteResult) -> None:
        self.telemetry_staged += other.telemetry_staged
        self.telemetry_inserted += other.telemetry_inserted
        self.statuses += other.statuses
        self.dead_letters.extend(other.dead_letters)


class DatabaseUnavailable(RuntimeError):
    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{type(cause).__name__}: {str(cause).strip() or 'no detail'}")


class BatchWriter:
    """One connection, one batch in flight. ``write`` returns only once committed."""

    def __init__(
        self, database_url: str, *, application_name: str = CONSUMER,
        backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0,
        attempt_timeout_s: float = 30.0, connect_timeout_s: int = 5,
    ) -> None:
        self._url = database_url
        self._application_name = application_name
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._attempt_timeout_s = attempt_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def write(self, items: Sequence[Item]) -> WriteResult:
        """Commit the batch, retrying for as long as the database is unreachable."""
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        delay_s = self._backoff_initial_s
        while True:
            try:
                result = await self.write_once(items)
            except DatabaseUnavailable as exc:
                if down_since is None:
                    down_since = loop.time()
                    log.warning("database unreachable (%s): keeping %d messages "
                                "unacknowledged and retrying", exc, len(items))
                await asyncio.sleep(delay_s * random.uniform(0.5, 1.0))
                delay_s = min(delay_s * 2, self._backoff_max_s)
                continue
            if down_since is not None:
                log.info("database back after %.0f s", loop.time() - down_since)
            return result

    async def write_once(self, items: Sequence[Item]) -> WriteResult:
        """One attempt; DatabaseUnavailable if the database cannot be reached or fails."""
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                conn = await self._connection()
                try:
                    return await _write_all(conn, items)
                except _REFUSED as exc:
                    log.warning("the database refused a batch of %d messages (%s); "
                                "writing them one by one", len(items), exc)
                    return await _write_each(conn, items)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._discard_connection()
            raise DatabaseUnavailable(exc) from exc
        except asyncio.CancelledError:
            # the transaction may be half done: start the next attempt on a new connection
            await self._discard_connection()
            raise

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=self._connect_timeout_s,
                application_name=self._application_name,
            )
            await conn.execute(CREATE_STAGE)
            self._conn = conn
        return self._conn

    async def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)


async def _close_quietly(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    try:
        await conn.close()
    except (psycopg.Error, OSError):
        log.debug("closing a broken database connection failed", exc_info=True)


async def _write_all(
    conn: psycopg.AsyncConnection[tuple[object, ...]], items: Sequence[Item]
) -> WriteResult:
    result = WriteResult()
    telemetry = [r for i in items for r in i.decoded.telemetry]
    devices = [s for i in items if (s := i.decoded.device_status) is not None]
    gateways = [g for i in items if (g := i.decoded.gateway_status) is not None]
    dead = [x for i in items if (x := i.decoded.dead_letter) is not None]
    async with conn.transaction(), conn.cursor() as cur:
        if telemetry:
            async with cur.copy(COPY_STAGE) as copy:
                copy.set_types(STAGE_TYPES)
                for r in telemetry:
                    await copy.write_row((r.time, r.point_id, r.value, r.value_text, r.quality))
            await cur.execute(INSERT_TELEMETRY)
            result.telemetry_staged = len(telemetry)
            result.telemetry_inserted = max(cur.rowcount, 0)
            await cur.execute(UPSERT_LATEST)
        if devices:
            await cur.executemany(
                UPSERT_DEVICE_STATUS, [(d.device_id, d.state, d.reason, d.time) for d in devices])
            await cur.executemany(
                INSERT_DEVICE_HISTORY, [(d.device_id, d.time, d.state, d.reason) for d in devices])
        for g in gateways:
            await cur.execute(UPSERT_GATEWAY, (g.site_id, g.gateway, g.state, g.session, g.time))
        if dead:
            await cur.executemany(
                INSERT_DEAD_LETTER, [(CONSUMER, d.topic, d.payload, d.reason) for d in dead])
    result.statuses = len(devices) + len(gateways)
    result.dead_letters = dead
    return result


async def _write_each(
    conn: psycopg.AsyncConnection[tuple[object, ...]], items: Sequence[Item]
) -> WriteResult:
    total = WriteResult()
    for item in items:
        try:
            total.add(await _write_all(conn, [item]))
        except _REFUSED as exc:
            refused = dead_letter(item.topic, item.payload, DeadLetterKind.DATABASE,
                                  f"database refused: {str(exc).strip()}")
            total.add(await _write_all(conn, [Item(item.topic, item.payload, refused)]))
    return total
