"""The loop of ingest: gathers received deliveries into batches (by row count and by age),
has each batch committed by the ``BatchWriter`` and only then acknowledges its messages.

Two batches at most are in hand: one being written while the next is decoded, so decoding
in Python and committing in PostgreSQL overlap. Acknowledgements go in commit order, in one
socket write per batch. While the database is down the writer keeps its batch
unacknowledged and the loop stops taking deliveries once the next batch is full, so memory
is bounded by two batches plus the broker's in-flight window (MQTT 5 Receive Maximum). On
shutdown the batches in hand get one short attempt; what cannot be committed stays
unacknowledged and the broker redelivers it to the next session, where the idempotent
writes store it once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from facility import topics
from facility.messages import utcnow
from facility.mqtt_session import Delivery, MqttSession
from facility.topics import TopicKind
from ingest.batch import Assembler, Batch
from ingest.batch_writer import BatchWriter, DatabaseUnavailable, WriteResult
from ingest.counters import Counters, WarningLimiter
from ingest.fast_path import micros

log = logging.getLogger(__name__)
# Telemetry, the volume, is shared among the instances of a share group. Status and birth
# are retained and few: every instance subscribes to them unshared, because MQTT 5 does not
# send retained messages to a new shared subscription (mosquitto does, EMQX and HiveMQ do
# not) and their writes are idempotent (newer-only upserts, history keyed on time).
SHARED_KINDS = (TopicKind.TELEMETRY,)
UNSHARED_KINDS = (TopicKind.DEVICE_STATUS, TopicKind.BIRTH, TopicKind.GATEWAY_STATUS)
SHUTDOWN_FLUSH_S = 5.0
YIELD_EVERY = 64  # deliveries decoded between two yields to the event loop


def subscriptions(site_id: str, share_group: str = "") -> list[str]:
    """The topic filters ingest subscribes to (QoS 1)."""
    return ([topics.subscription(k, site_id, share_group or None) for k in SHARED_KINDS]
            + [topics.subscription(k, site_id) for k in UNSHARED_KINDS])


class Consumer:
    """Reads ``session``'s deliveries, decodes them with ``assembler``, writes batches."""

    def __init__(
        self, session: MqttSession, writer: BatchWriter, assembler: Assembler,
        counters: Counters, *, batch_rows: int = 10_000, batch_ms: int = 200,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session = session
        self._writer = writer
        self._assembler = assembler
        self._counters = counters
        self._batch_rows = batch_rows
        self._batch_s = batch_ms / 1000
        self._clock = clock
        self._warnings = WarningLimiter()
        self._backlog: list[Delivery] = []
        self._pos = 0

    async def run(self) -> None:
        """Consume until cancelled; the batches in hand are flushed once on the way out."""
        writing: _Writing | None = None
        batch = Batch()
        try:
            while True:
                started = await self._fill(batch)
                if writing is not None:
                    await asyncio.shield(writing.task)  # a cancel must not cancel the write
                    self._on_written(writing)
                writing = _Writing(batch, started, asyncio.create_task(
                    self._timed_write(batch), name="ingest-write"))
                writing.task.add_done_callback(functools.partial(self._written, writing))
                batch = Batch()
                self._counters.pending = self._in_hand(writing.batch)
        except asyncio.CancelledError:
            await self._flush_on_exit(writing, batch)
            raise

    def _in_hand(self, *batches: Batch) -> int:
        return (sum(len(b.deliveries) for b in batches) + len(self._backlog) - self._pos
                + self._session.pending)

    async def _fill(self, batch: Batch) -> float:
        """Wait for a first delivery, then gather until the batch is full or old enough;
        the loop time of the first delivery."""
        loop = asyncio.get_running_loop()
        self._assembler.clock(self._clock())
        deadline: float | None = None
        started = 0.0
        while batch.size < self._batch_rows:
            if self._pos >= len(self._backlog):
                self._backlog, self._pos = self._session.take(), 0
            if self._pos < len(self._backlog):
                if deadline is None:
                    started = loop.time()
                    deadline = started + self._batch_s
                await self._decode_some(batch, loop.time())
                continue
            if deadline is None:
                await self._session.arrived.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._session.arrived.wait()
        return started

    async def _decode_some(self, batch: Batch, now_s: float) -> None:
        add, backlog = self._assembler.add, self._backlog
        end = min(len(backlog), self._pos + YIELD_EVERY)
        limit = self._batch_rows
        while self._pos < end and batch.size < limit:
            add(batch, backlog[self._pos], now_s)
            self._pos += 1
        await asyncio.sleep(0)  # let the batch being written progress

    async def _timed_write(self, batch: Batch) -> WriteResult:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        result = await self._writer.write(batch)
        self._counters.write_latency.observe(loop.time() - t0)
        return result

    def _written(self, w: _Writing, _task: asyncio.Task[WriteResult]) -> None:
        self._on_written(w)

    def _on_written(self, w: _Writing) -> None:
        """Acknowledge and count a committed batch, once (as soon as its write is done)."""
        if w.handled or not w.task.done() or w.task.cancelled() or w.task.exception():
            return
        w.handled = True
        self._session.ack(w.batch.deliveries)
        self._committed(w.batch, w.task.result())
        self._counters.batch_latency.observe(asyncio.get_running_loop().time() - w.started)
        self._counters.pending = self._in_hand()

    def _committed(self, batch: Batch, result: WriteResult) -> None:
        c = self._counters
        c.messages_in += len(batch.deliveries)
        c.batches += 1
        c.rows_written += result.telemetry_inserted + result.statuses
        c.redeliveries_ignored += result.telemetry_staged - result.telemetry_inserted
        c.redelivered += batch.redelivered
        c.staged_batches += result.staged_path
        c.status_events += result.status_events
        if batch.newest_us:
            c.lag_s = (micros(self._clock()) - batch.newest_us) / 1e6
        loop_s = asyncio.get_running_loop().time()
        seq = self._assembler.sequences
        if seq is not None:
            seq.expire(loop_s)
            c.seq_gaps, c.seq_duplicates = seq.gaps, seq.duplicates
        for dead in result.dead_letters:
            c.dead_letters += 1
            c.dead_letters_by_kind[dead.kind] = c.dead_letters_by_kind.get(dead.kind, 0) + 1
            if self._warnings.due(dead.kind, loop_s):
                held = self._warnings.take_suppressed(dead.kind)
                log.warning("dead letter (%s) from %s: %s%s", dead.kind, dead.topic,
                            dead.reason, f" [{held} more of this kind not logged]" if held else "")
        for birth, retained in batch.births:
            log.log(logging.DEBUG if retained else logging.INFO,
                    "birth of %s: profile %s v%d, session %s", birth.device, birth.profile,
                    birth.profile_version, birth.session)

    async def _flush_on_exit(self, writing: _Writing | None, batch: Batch) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                if writing is not None:
                    await asyncio.shield(writing.task)
                    self._on_written(writing)
                if batch.deliveries:
                    result = await self._writer.write_once(batch)
                    self._session.ack(batch.deliveries)
                    self._committed(batch, result)
        except (DatabaseUnavailable, TimeoutError) as exc:
            left = len(batch.deliveries) + (len(writing.batch.deliveries) if writing else 0)
            log.warning("shutting down with up to %d messages not stored (%s): left "
                        "unacknowledged for the broker to redeliver", left, exc)
            if writing is not None:
                writing.task.cancel()


@dataclass(slots=True)
class _Writing:
    batch: Batch
    started: float
    task: asyncio.Task[WriteResult]
    handled: bool = False
