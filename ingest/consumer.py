"""The MQTT side of ingest: a manual-ack, persistent-session client subscribed to telemetry,
device status, birth and gateway status of one site, and the loop that gathers received
messages into batches (by row count and by age), has each batch committed by the
``BatchWriter`` and only then acknowledges its messages.

While the database is down the loop waits on the writer with its batch unacknowledged; it
reads no further messages meanwhile, so memory is bounded by the client's queue and the
broker's in-flight window (MQTT 5 Receive Maximum). On shutdown the open batch gets one
short attempt; what cannot be committed stays unacknowledged and the broker redelivers it
to the next session, where the idempotent writes store it once."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

from facility import topics
from facility.messages import utcnow
from facility.mqtt import Message, MqttClient
from facility.topics import TopicKind
from ingest.batch_writer import BatchWriter, DatabaseUnavailable, Item, WriteResult
from ingest.counters import Counters, WarningLimiter
from ingest.rows import Catalog, DeadLetterKind, Decoded, dead_letter, decode

log = logging.getLogger(__name__)
# Telemetry, the volume, is shared among the instances of a share group. Status and birth
# are retained and few: every instance subscribes to them unshared, because MQTT 5 does not
# send retained messages to a new shared subscription (mosquitto does, EMQX and HiveMQ do
# not) and their writes are idempotent (newer-only upserts, history keyed on time).
SHARED_KINDS = (TopicKind.TELEMETRY,)
UNSHARED_KINDS = (TopicKind.DEVICE_STATUS, TopicKind.BIRTH, TopicKind.GATEWAY_STATUS)
SHUTDOWN_FLUSH_S = 5.0


def client_id_for(site_id: str, share_group: str = "") -> str:
    """``ingest-{site}``; in a shared group each instance needs its own persistent session,
    so the host name is added (one ingest per host and group)."""
    if not share_group:
        return f"ingest-{site_id}"
    return f"ingest-{site_id}-{share_group}-{socket.gethostname()}"


async def subscribe_all(client: MqttClient, site_id: str, share_group: str = "") -> None:
    """Subscribe (QoS 1) to every kind ingest stores; call before ``client.start()``."""
    for kind in SHARED_KINDS:
        await client.subscribe(topics.subscription(kind, site_id, share_group or None), qos=1)
    for kind in UNSHARED_KINDS:
        await client.subscribe(topics.subscription(kind, site_id), qos=1)


@dataclass(slots=True)
class Batch:
    items: list[Item] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    rows: int = 0

    def add(self, message: Message, decoded: Decoded) -> None:
        self.items.append(Item(message.topic, message.payload, decoded))
        self.messages.append(message)
        self.rows += decoded.rows


class Consumer:
    """Reads ``client``'s messages, decodes them against ``catalog`` and writes batches."""

    def __init__(
        self, client: MqttClient, writer: BatchWriter, catalog: Catalog, counters: Counters,
        *, batch_rows: int = 5000, batch_ms: int = 200,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._client = client
        self._writer = writer
        self._catalog = catalog
        self._counters = counters
        self._batch_rows = batch_rows
        self._batch_s = batch_ms / 1000
        self._clock = clock
        self._warnings = WarningLimiter()
        self._messages: AsyncIterator[Message] = client.messages()
        self._next: asyncio.Task[Message] | None = None

    async def run(self) -> None:
        """Consume until cancelled; the open batch is flushed once on the way out."""
        batch = Batch()
        try:
            while True:
                batch = Batch()
                await self._fill(batch)
                result = await self._writer.write(batch.items)
                self._committed(batch, result)
        except asyncio.CancelledError:
            await self._flush_on_exit(batch)
            raise
        finally:
            if self._next is not None:
                self._next.cancel()

    async def _fill(self, batch: Batch) -> None:
        """Wait for a first message, then gather until the batch is full or old enough."""
        first = await self._receive(None)
        assert first is not None  # no timeout: a message
        self._take(batch, first)
        deadline = asyncio.get_running_loop().time() + self._batch_s
        while batch.rows < self._batch_rows:
            remaining = deadline - asyncio.get_running_loop().time()
            message = await self._receive(remaining) if remaining > 0 else None
            if message is None:
                return
            self._take(batch, message)

    async def _receive(self, timeout_s: float | None) -> Message | None:
        """The next message, or None after ``timeout_s`` (the pending read is kept)."""
        if self._next is None:
            self._next = asyncio.ensure_future(anext(self._messages))
        if not self._next.done():
            await asyncio.wait({self._next}, timeout=timeout_s)
            if not self._next.done():
                return None
        task, self._next = self._next, None
        return task.result()

    def _take(self, batch: Batch, message: Message) -> None:
        self._counters.messages_in += 1
        try:
            decoded = decode(message.topic, message.payload, self._catalog, self._clock())
        except Exception as exc:  # a bug of ours must not stop ingest: keep the message
            log.exception("could not decode a message from %s", message.topic)
            decoded = dead_letter(message.topic, message.payload, DeadLetterKind.INTERNAL,
                                  f"ingest could not decode it: {exc!r}")
        batch.add(message, decoded)

    def _committed(self, batch: Batch, result: WriteResult) -> None:
        for message in batch.messages:
            message.ack()
        c = self._counters
        c.batches += 1
        c.rows_written += result.telemetry_inserted + result.statuses
        c.redeliveries_ignored += result.telemetry_staged - result.telemetry_inserted
        now_s = asyncio.get_running_loop().time()
        for dead in result.dead_letters:
            c.dead_letters += 1
            c.dead_letters_by_kind[dead.kind] = c.dead_letters_by_kind.get(dead.kind, 0) + 1
            if self._warnings.due(dead.kind, now_s):
                held = self._warnings.take_suppressed(dead.kind)
                log.warning("dead letter (%s) from %s: %s%s", dead.kind, dead.topic,
                            dead.reason, f" [{held} more of this kind not logged]" if held else "")
        for item, message in zip(batch.items, batch.messages, strict=True):
            birth = item.decoded.birth
            if birth is not None:
                log.log(logging.DEBUG if message.retain else logging.INFO,
                        "birth of %s: profile %s v%d, session %s", birth.device, birth.profile,
                        birth.profile_version, birth.session)

    async def _flush_on_exit(self, batch: Batch) -> None:
        if not batch.items:
            return
        try:
            async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                result = await self._writer.write_once(batch.items)
        except (DatabaseUnavailable, TimeoutError) as exc:
            log.warning("shutting down with %d messages not stored (%s): left unacknowledged "
                        "for the broker to redeliver", len(batch.items), exc)
            return
        self._committed(batch, result)

