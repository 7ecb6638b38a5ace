"""Store-and-forward between the publisher and the broker, live first: while the MQTT
connection is up a message goes out at once (QoS 1), whatever is queued; while it is down,
messages are spooled to the on-disk queue (``gateway.buffer.MessageStore``) and replayed
beside the live ones once it is back.

``send`` publishes at once when connected, within ``max_inflight`` live messages awaiting
their PUBACK (a caller past that waits, so a slow broker slows the pollers, whose skipped
ticks are counted, instead of growing memory); otherwise it spools the message: appended to
an in-memory batch that the flusher writes to the SQLite file in one transaction every
``flush_interval_s`` on one dedicated thread. When the connection drops, or a PUBACK does
not come within ``puback_timeout_s``, the live messages still awaiting theirs are spooled
too (paho may also resend them: delivery is at-least-once, consumers de-duplicate by device
and seq, or by (point, time)). ``epoch`` counts the connections: the publisher sends each
device's first report of a new connection as a full snapshot, so the consumers' live view
is whole again at once.

The replayer publishes the queue while connected, beside the live traffic but at a bounded
share of the link: at most ``replay_window`` messages in flight (and a tenth of a second's
worth) and ``replay_rate_per_s`` per second, pausing while live senders wait for the live
window. Critical rows (alarm and state changes, device status, births) go before bulk
telemetry; telemetry is flagged ``historical: true`` with its original ``ts``, ``seq`` and
``session``; rows are deleted only after their PUBACK. The consumers tell replayed from live
by that flag, and order a device's messages by (session, seq) and ``ts``
(docs/architecture.md).

A disk that refuses a write (full, read-only, I/O error) loses nothing already held: the
batch stays in memory (bounded by ``max_memory``, bulk dropped oldest first and counted),
is replayed from there, and the write is retried every ``DISK_RETRY_S``; it is logged once
and its recovery once, and ``unstored`` counts the messages held in memory instead of on
disk. Live publishing goes on meanwhile. ``close`` spools whatever is unacknowledged, so a
restart resumes the queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from facility.mqtt import MqttClient, MqttError
from gateway.buffer import MessageStore, Outgoing, Stored
from gateway.counters import GatewayCounters

log = logging.getLogger(__name__)
T = TypeVar("T")

WATCH_INTERVAL_S = 0.2
REPLAY_RETRY_S = 1.0
DISK_RETRY_S = 5.0


class Forwarder:
    def __init__(
        self, mqtt: MqttClient, store: MessageStore, counters: GatewayCounters, *,
        puback_timeout_s: float = 10.0, max_inflight: int = 500, flush_interval_s: float = 0.05,
        replay_window: int = 100, replay_rate_per_s: float = 2000.0,
        max_memory: int = 50_000,
    ) -> None:
        self._mqtt = mqtt
        self._store = store
        self._counters = counters
        self._puback_timeout_s = puback_timeout_s
        self._max_inflight = max_inflight
        self._flush_interval_s = flush_interval_s
        # a batch holds a tenth of a second's worth (at least one): the pace stays smooth
        self._replay_window = max(1, min(replay_window, int(replay_rate_per_s / 10)))
        self._replay_rate = replay_rate_per_s
        self._max_memory = max_memory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-buffer")
        self._live: dict[asyncio.Future[None], tuple[Outgoing, float]] = {}
        self._pending: list[Outgoing] = []  # spooled, not on disk yet (or the disk refused)
        # senders waiting for a free slot in the in-flight window, woken one per PUBACK (one
        # future each: waiting on the set of live futures cost O(window) per waiter per ack)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._has_backlog = asyncio.Event()
        self._spooled = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._disk_ok = True
        self._undeleted: list[Stored] = []  # replayed and acknowledged; the disk refused
        self._skip: set[int] = set()  # ... their deletion: not replayed again
        self.epoch = 0  # connections seen (the publisher re-snapshots on a new one)
        self._no_waiting = False
        if store.count:
            self._has_backlog.set()
            log.info("resuming %d queued messages from %s", store.count, store.path)

    @property
    def depth(self) -> int:
        """Messages queued (on disk or in memory) and not yet acknowledged."""
        return self._store.count - len(self._skip) + len(self._pending)

    @property
    def inflight(self) -> int:
        return len(self._live)

    async def send(self, message: Outgoing) -> None:
        while self._mqtt.connected.is_set():
            if len(self._live) < self._max_inflight:
                self._publish_live(message)
                return
            if self._no_waiting:
                break
            self._counters.publish_waits += 1
            try:
                await self._wait_for_slot()
            except asyncio.CancelledError:  # a stop: the message is kept, not lost
                self._spool(message)
                raise
            self._check_pubacks()
        self._spool(message)

    async def run(self) -> None:
        """Flush the spool, replay the backlog and watch PUBACKs until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._flush_forever(), name="buffer-flush")
            tg.create_task(self._replay_forever(), name="buffer-replay")
            tg.create_task(self._watch_forever(), name="buffer-watch")

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for every live message in flight to be acknowledged."""
        if self._live:
            await asyncio.wait(set(self._live), timeout=timeout_s)

    async def close(self) -> None:
        """Spool every unacknowledged message to disk and close the store."""
        self._divert_live()
        async with self._flush_lock:
            await self._flush_pending()
            await self._delete_undeleted()
        if self._pending:
            log.error("could not store %d unacknowledged messages in %s at shutdown: lost",
                      len(self._pending), self._store.path)
        await self._run(self._store.close)
        self._executor.shutdown(wait=True)

    def stop_waiting(self) -> None:
        """At a stop: from now on a sender finding the in-flight window full spools its
        message at once instead of waiting for a PUBACK (a broker that stopped answering
        must not hold the gateway's stop)."""
        self._no_waiting = True
        self._wake_all_waiters()

    def salvage(self, timeout_s: float = 2.0) -> None:
        """The last save of an overdue stop, synchronous and off the event loop's objects:
        spool the messages in flight and in the in-memory batch (waiting at most
        ``timeout_s`` for the buffer thread)."""
        batch = [msg for msg, _t in self._live.values()] + self._pending
        self._live, self._pending = {}, []
        try:
            if batch:
                self._executor.submit(self._store.append, batch).result(timeout_s)
            else:  # let an append in progress (close's) finish
                self._executor.submit(lambda: None).result(timeout_s)
        except RuntimeError:  # closed meanwhile: close spooled them
            if batch:
                raise

    # live path

    async def _wait_for_slot(self) -> None:
        """Until a PUBACK frees a slot (or the watch interval passes: the caller re-checks)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(WATCH_INTERVAL_S):
                await waiter
        except TimeoutError:
            pass
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _publish_live(self, message: Outgoing) -> None:
        fut = self._mqtt.publish_nowait(message.topic, message.payload, qos=1,
                                        retain=message.retain)
        self._live[fut] = (message, asyncio.get_running_loop().time())
        fut.add_done_callback(self._acked)

    def _acked(self, fut: asyncio.Future[None]) -> None:
        entry = self._live.pop(fut, None)
        if entry is not None:
            self._wake_waiter()
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            if entry is not None:  # else it was spooled meanwhile and counts when replayed
                self._counters.published += 1
            return
        self._counters.publish_failures += 1
        log.warning("publish failed: %s", exc if isinstance(exc, MqttError) else repr(exc))
        if entry is not None:
            self._spool(entry[0])

    def _check_pubacks(self) -> None:
        """Spool the live messages when the link is down or the oldest PUBACK is late."""
        if not self._live:
            return
        if not self._mqtt.connected.is_set():
            self._divert_live()
            return
        _msg, sent_at = next(iter(self._live.values()))
        if asyncio.get_running_loop().time() - sent_at > self._puback_timeout_s:
            log.warning("no PUBACK within %.0f s; queueing on disk", self._puback_timeout_s)
            self._divert_live()

    def _divert_live(self) -> None:
        live, self._live = self._live, {}
        self._wake_all_waiters()
        if live:
            log.debug("spooling %d unacknowledged messages", len(live))
            self._pending[:0] = [msg for msg, _t in live.values()]
            self._enter_backlog(len(live))

    # spool and disk

    def _spool(self, message: Outgoing) -> None:
        self._pending.append(message)
        self._counters.queued += 1
        self._enter_backlog(1)

    def _enter_backlog(self, added: int) -> None:
        if not self._has_backlog.is_set():
            log.warning("broker unreachable; queueing messages on disk in %s", self._store.path)
        self._has_backlog.set()
        self._spooled.set()
        if not self._disk_ok:
            self._counters.unstored += added
            self._bound_memory()

    def _bound_memory(self) -> None:
        """While the disk refuses writes: drop the oldest bulk messages past ``max_memory``."""
        over = len(self._pending) - self._max_memory
        if over <= 0:
            return
        kept: list[Outgoing] = []
        for m in self._pending:
            if over > 0 and not m.critical:
                over -= 1
                self._counters.dropped += 1
            else:
                kept.append(m)
        self._pending = kept

    async def _flush_forever(self) -> None:
        while True:
            if self._disk_ok:
                await self._spooled.wait()
                self._spooled.clear()
                await asyncio.sleep(self._flush_interval_s)  # gather a batch
            else:
                await asyncio.sleep(DISK_RETRY_S)
            async with self._flush_lock:
                await self._flush_pending()
                await self._delete_undeleted()

    async def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            dropped = await self._run(self._store.append, batch)
        except sqlite3.Error as exc:
            self._pending[:0] = batch  # nothing lost: kept in memory, in order
            self._disk_refused(exc, len(batch))
            return
        self._disk_back(len(batch))
        if dropped:
            self._counters.dropped += dropped
            log.warning("queue full: dropped the %d oldest telemetry messages", dropped)

    def _disk_refused(self, exc: sqlite3.Error, held: int) -> None:
        if self._disk_ok:
            self._disk_ok = False
            self._counters.unstored += held
            log.error("cannot write the queue file %s (%s): holding %d messages in memory "
                      "(at most %d), publishing live, retrying every %.0f s", self._store.path,
                      exc, held, self._max_memory, DISK_RETRY_S)
        self._bound_memory()

    def _disk_back(self, stored: int) -> None:
        if not self._disk_ok:
            self._disk_ok = True
            log.info("queue file %s writable again: %d messages stored", self._store.path,
                     stored)

    async def _delete_undeleted(self) -> None:
        if not self._undeleted:
            return
        try:
            await self._run(self._store.delete, self._undeleted)
        except sqlite3.Error:
            return
        self._undeleted = []
        self._skip.clear()

    # replay

    async def _replay_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_backlog.wait()
            await self._mqtt.connected.wait()
            while self._waiters and self._mqtt.connected.is_set():
                await self._wait_for_slot()  # live first: senders are waiting for the window
            async with self._flush_lock:
                if self._disk_ok:
                    await self._flush_pending()
                rows = await self._disk_batch()
                memory = [] if rows else self._pending[:self._replay_window]
                if not rows and not memory:
                    self._has_backlog.clear()
                    log.info("queue replayed")
                    continue
            started = loop.time()
            if rows:
                ok = await self._replay(rows)
            else:
                ok = await self._replay_memory(memory)
            if not ok:
                await asyncio.sleep(REPLAY_RETRY_S)
                continue
            pace_s = len(rows or memory) / self._replay_rate - (loop.time() - started)
            if pace_s > 0:
                await asyncio.sleep(pace_s)

    async def _disk_batch(self) -> list[Stored]:
        want = self._replay_window + len(self._skip)
        try:
            rows = await self._run(self._store.next_batch, want)
        except sqlite3.Error as exc:
            log.warning("reading the queue file failed: %s", exc)
            return []
        return [r for r in rows if r.id not in self._skip][: self._replay_window]

    async def _publish_replay(self, messages: list[Outgoing]) -> list[bool]:
        futs = [self._mqtt.publish_nowait(m.topic, replay_payload(m), qos=1, retain=m.retain)
                for m in messages]
        await asyncio.wait(futs, timeout=self._puback_timeout_s)
        return [f.done() and not f.cancelled() and f.exception() is None for f in futs]

    async def _replay(self, rows: list[Stored]) -> bool:
        """Publish rows, delete the acknowledged ones; False if any was not."""
        acks = await self._publish_replay([r.message for r in rows])
        acked = [r for r, ok in zip(rows, acks, strict=True) if ok]
        async with self._flush_lock:
            try:
                await self._run(self._store.delete, acked)
            except sqlite3.Error as exc:  # acknowledged: never replay them again
                self._undeleted += acked
                self._skip.update(r.id for r in acked)
                self._disk_refused(exc, 0)
        self._counters.replayed += len(acked)
        self._counters.published += len(acked)
        return len(acked) == len(rows)

    async def _replay_memory(self, messages: list[Outgoing]) -> bool:
        """Publish messages held in memory (the disk refused them); drop the acknowledged."""
        acks = await self._publish_replay(messages)
        done = {id(m) for m, ok in zip(messages, acks, strict=True) if ok}
        self._pending = [m for m in self._pending if id(m) not in done]
        self._counters.replayed += len(done)
        self._counters.published += len(done)
        return len(done) == len(messages)

    async def _watch_forever(self) -> None:
        was_connected = False
        while True:
            connected = self._mqtt.connected.is_set()
            if connected and not was_connected:
                self.epoch += 1
            was_connected = connected
            self._check_pubacks()
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the buffer thread. Shielded: cancelling the caller (a stop) must not
        cancel a job still queued behind another, or the batch it appends would be lost."""
        job = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        job.add_done_callback(_retrieve)
        return await asyncio.shield(job)


def _retrieve(job: asyncio.Future[T]) -> None:
    """Mark the outcome as seen: the caller, unless cancelled, has it raised too."""
    if not job.cancelled():
        job.exception()


def replay_payload(message: Outgoing) -> bytes:
    """The stored payload, telemetry flagged ``historical`` (every other field unchanged)."""
    if not message.telemetry:
        return message.payload
    data = json.loads(message.payload)
    data["historical"] = True
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
