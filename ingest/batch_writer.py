"""Writes one ``Batch`` to PostgreSQL in one transaction, and keeps trying until it is
committed; the caller acknowledges the batch's messages only afterwards.

Telemetry goes by binary COPY straight into ``telemetry`` (the fast path). If that meets a
row already stored (a unique violation: a redelivery, a gateway replaying its buffer), the
transaction is rolled back and the batch goes through a temporary staging table and
``INSERT ... ON CONFLICT (point_id, time) DO NOTHING``, so every row is stored once; the
staging path is also used for the next few batches and for batches holding a delivery the
broker flagged as a possible duplicate. In the same transaction: latest_values upserted
newer-only from each point's newest row with the flags its message gave it (NULL: none),
the touched minutes marked for the rollup job (partitions layout), device status upserted
newer-only with a history row and a ``device.status`` event in the outbox when a device's
online state changes, gateway status by the session rule (see ``UPSERT_GATEWAY``), dead
letters. Day partitions a batch needs are created first (``telemetry_ensure_partition``).

While the database is unreachable (``facility.db.outage``: no connection, a standby or a
demoted primary answering "read-only" during a failover) the batch is kept and retried on a
new connection with capped, jittered exponential backoff, logged once when it goes and once
when it is back. A batch whose commit outcome is unknown (the connection broke during
COMMIT) is retried through the staging path, so it is stored once whether or not the lost
attempt committed. If the database
refuses the batch's data (a data or integrity error), the messages are written one by one
and the ones it refuses become dead letters, so one poison message cannot stop ingest."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import errors

from facility import events
from facility.db.connect import CONNECT_TIMEOUT_S, connect
from facility.db.outage import describe, is_outage
from facility.messages import AlarmEvent
from facility.mqtt_session import Delivery
from ingest.batch import DAY_US, MINUTE_US, Batch
from ingest.counters import Counters
from ingest.fast_path import from_micros
from ingest.rows import DeadLetter, DeadLetterKind, DeviceStatusRow, dead_letter

log = logging.getLogger(__name__)
CONSUMER = "ingest"
Conn = psycopg.AsyncConnection[tuple[object, ...]]
SAFE_BATCHES_AFTER_CONFLICT = 8

CREATE_STAGES = (
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage (time timestamptz NOT NULL,"
    " point_id integer NOT NULL, value double precision, value_text text,"
    " quality smallint NOT NULL) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS latest_stage (LIKE telemetry_stage, flags text)"
    " ON COMMIT DELETE ROWS"
)
COLUMNS = "(time, point_id, value, value_text, quality)"
COPY_TELEMETRY = f"COPY telemetry {COLUMNS} FROM STDIN (FORMAT BINARY)"
COPY_STAGE = f"COPY telemetry_stage {COLUMNS} FROM STDIN (FORMAT BINARY)"
COPY_LATEST = ("COPY latest_stage (time, point_id, value, value_text, quality, flags)"
               " FROM STDIN (FORMAT BINARY)")
INSERT_FROM_STAGE = (
    f"INSERT INTO telemetry {COLUMNS} SELECT time, point_id, value, value_text, quality"
    " FROM telemetry_stage ON CONFLICT (point_id, time) DO NOTHING"
)
UPSERT_LATEST = (
    "INSERT INTO latest_values (point_id, time, value, value_text, quality, flags)"
    " SELECT point_id, time, value, value_text, quality, flags FROM latest_stage"
    " ON CONFLICT (point_id) DO UPDATE SET time = EXCLUDED.time, value = EXCLUDED.value,"
    " value_text = EXCLUDED.value_text, quality = EXCLUDED.quality, flags = EXCLUDED.flags"
    " WHERE latest_values.time < EXCLUDED.time"
)
MARK_DIRTY = (
    "INSERT INTO telemetry_rollup_dirty (bucket) SELECT unnest(%s::timestamptz[])"
    " ON CONFLICT DO NOTHING"
)
ENSURE_PARTITION = "SELECT telemetry_ensure_partition(%s::date)"
# The previous state is read in the same statement, so an event is recorded exactly when
# this message changed the device's online state.
UPSERT_DEVICE_STATUS = (
    "WITH old AS (SELECT state FROM device_status WHERE device_id = %(d)s FOR UPDATE),"
    " up AS (INSERT INTO device_status (device_id, state, reason, time)"
    "  VALUES (%(d)s, %(s)s, %(r)s, %(t)s) ON CONFLICT (device_id) DO UPDATE"
    "  SET state = EXCLUDED.state, reason = EXCLUDED.reason, time = EXCLUDED.time"
    "  WHERE device_status.time < EXCLUDED.time RETURNING state)"
    " SELECT (SELECT state FROM old), (SELECT state FROM up)"
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


@dataclass(slots=True)
class WriteResult:
    telemetry_staged: int = 0
    telemetry_inserted: int = 0
    statuses: int = 0
    status_events: int = 0
    staged_path: bool = False  # the batch went through the staging table
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def add(self, other: WriteResult) -> None:
        self.telemetry_staged += other.telemetry_staged
        self.telemetry_inserted += other.telemetry_inserted
        self.statuses += other.statuses
        self.status_events += other.status_events
        self.staged_path = self.staged_path or other.staged_path
        self.dead_letters.extend(other.dead_letters)


class DatabaseUnavailable(RuntimeError):
    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{type(cause).__name__}: {str(cause).strip() or 'no detail'}")


class BatchWriter:
    """One connection, one batch in flight. ``write`` returns only once committed.
    ``single`` makes the one-message batch of a delivery (for writing one by one)."""

    def __init__(
        self, database_url: str, site_id: str, single: Callable[[Delivery], Batch], *,
        partitions: bool = True, application_name: str = CONSUMER,
        backoff_initial_s: float = 0.2, backoff_max_s: float = 2.0,
        attempt_timeout_s: float = 30.0, connect_timeout_s: int = CONNECT_TIMEOUT_S,
        counters: Counters | None = None,
    ) -> None:
        self._url = database_url
        self._counters = counters if counters is not None else Counters()
        self._site_id = site_id
        self._single = single
        self.partitions = partitions
        self._application_name = application_name
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._attempt_timeout_s = attempt_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._conn: Conn | None = None
        self._days: set[int] = set()
        self._safe_batches = 0

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def write(self, batch: Batch) -> WriteResult:
        """Commit the batch, retrying for as long as the database is unreachable."""
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        delay_s = self._backoff_initial_s
        while True:
            try:
                result = await self.write_once(batch)
            except DatabaseUnavailable as exc:
                self._counters.write_retries += 1
                # the attempt may have committed before its reply was lost: the retry goes
                # through the staging table (ON CONFLICT DO NOTHING), so rows stay single
                self._safe_batches = max(self._safe_batches, 1)
                if down_since is None:
                    down_since = loop.time()
                    log.warning("database %s (%s): keeping %d messages unacknowledged and "
                                "retrying", "unreachable" if is_outage(exc.cause) else "failing",
                                describe(exc.cause), len(batch.deliveries))
                await asyncio.sleep(delay_s * random.uniform(0.5, 1.0))
                delay_s = min(delay_s * 2, self._backoff_max_s)
                continue
            if down_since is not None:
                log.info("database back after %.0f s", loop.time() - down_since)
            return result

    async def write_once(self, batch: Batch) -> WriteResult:
        """One attempt; DatabaseUnavailable if the database cannot be reached or fails."""
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                conn = await self._connection()
                try:
                    return await self._write_batch(conn, batch)
                except _REFUSED as exc:
                    log.warning("the database refused a batch of %d messages (%s); "
                                "writing them one by one", len(batch.deliveries), exc)
                    return await self._write_each(conn, batch)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._discard_connection()
            raise DatabaseUnavailable(exc) from exc
        except asyncio.CancelledError:
            # the transaction may be half done: start the next attempt on a new connection
            await self._discard_connection()
            raise

    async def _write_batch(self, conn: Conn, batch: Batch) -> WriteResult:
        await self._ensure_partitions(conn, batch.days)
        direct = not batch.maybe_duplicate and self._safe_batches == 0
        if self._safe_batches:
            self._safe_batches -= 1
        try:
            return await _write(conn, batch, self._site_id, direct=direct,
                                partitions=self.partitions)
        except errors.UniqueViolation:
            if not direct:
                raise
            self._safe_batches = SAFE_BATCHES_AFTER_CONFLICT
            return await _write(conn, batch, self._site_id, direct=False,
                                partitions=self.partitions)
        except errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            self._days.clear()  # a partition was dropped under us: make them again
            await self._ensure_partitions(conn, batch.days)
            return await _write(conn, batch, self._site_id, direct=False,
                                partitions=self.partitions)

    async def _write_each(self, conn: Conn, batch: Batch) -> WriteResult:
        total = WriteResult()
        for delivery in batch.deliveries:
            one = self._single(delivery)
            try:
                total.add(await _write(conn, one, self._site_id, direct=False,
                                       partitions=self.partitions))
            except _REFUSED as exc:
                refused = Batch(deliveries=[delivery])
                topic = delivery.topic.decode("utf-8", "backslashreplace")
                refused.add_decoded(dead_letter(topic, delivery.payload, DeadLetterKind.DATABASE,
                                                f"database refused: {str(exc).strip()}"),
                                    delivery.retain)
                total.add(await _write(conn, refused, self._site_id, direct=False,
                                       partitions=self.partitions))
        return total

    async def _ensure_partitions(self, conn: Conn, days: set[int]) -> None:
        if not self.partitions:
            return
        for day in sorted(days - self._days):
            cur = await conn.execute(ENSURE_PARTITION, (from_micros(day * DAY_US).date(),))
            row = await cur.fetchone()
            if row and row[0]:
                log.info("created telemetry partition for %s",
                         from_micros(day * DAY_US).date())
            self._days.add(day)

    async def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            conn = await connect(self._url, application_name=self._application_name,
                                 connect_timeout=self._connect_timeout_s)
            await conn.execute(CREATE_STAGES)
            self._conn = conn
        return self._conn

    async def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except (psycopg.Error, OSError):
                log.debug("closing a broken database connection failed", exc_info=True)


async def _write(conn: Conn, batch: Batch, site_id: str, *, direct: bool,
                 partitions: bool) -> WriteResult:
    result = WriteResult(staged_path=not direct)
    async with conn.transaction(), conn.cursor() as cur:
        if batch.rows:
            if direct:
                async with cur.copy(COPY_TELEMETRY) as copy:
                    await copy.write(batch.copy_data())
                result.telemetry_inserted = batch.rows
            else:
                async with cur.copy(COPY_STAGE) as copy:
                    await copy.write(batch.copy_data())
                await cur.execute(INSERT_FROM_STAGE)
                result.telemetry_inserted = max(cur.rowcount, 0)
            result.telemetry_staged = batch.rows
            async with cur.copy(COPY_LATEST) as copy:
                await copy.write(batch.latest_data())
            await cur.execute(UPSERT_LATEST)
            if partitions:
                await cur.execute(MARK_DIRTY, ([from_micros(m * MINUTE_US)
                                                for m in sorted(batch.minutes)],))
        if batch.device_status:
            result.status_events = await _device_status(conn, cur, batch.device_status,
                                                        site_id)
        for g in batch.gateway_status:
            await cur.execute(UPSERT_GATEWAY, (g.site_id, g.gateway, g.state, g.session, g.time))
        if batch.dead_letters:
            await cur.executemany(INSERT_DEAD_LETTER, [
                (CONSUMER, d.topic, d.payload, d.reason) for d in batch.dead_letters])
    result.statuses = len(batch.device_status) + len(batch.gateway_status)
    result.dead_letters = list(batch.dead_letters)
    return result


async def _device_status(conn: Conn, cur: psycopg.AsyncCursor[tuple[object, ...]],
                         statuses: list[DeviceStatusRow], site_id: str) -> int:
    changes: list[AlarmEvent] = []
    for d in sorted(statuses, key=lambda s: s.time):
        await cur.execute(UPSERT_DEVICE_STATUS, {"d": d.device_id, "s": d.state,
                                                 "r": d.reason, "t": d.time})
        row = await cur.fetchone()
        previous, applied = row if row else (None, None)
        if applied is not None and applied != previous:
            changes.append(AlarmEvent(
                ts=d.time, event="device.status", device=d.device or None, state=d.state,
                detail={"reason": d.reason, "previous": previous}))
    await cur.executemany(INSERT_DEVICE_HISTORY,
                          [(d.device_id, d.time, d.state, d.reason) for d in statuses])
    await events.record(conn, site_id, changes)
    return len(changes)
