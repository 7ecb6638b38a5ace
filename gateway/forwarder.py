"""Store-and-forward between the publisher and the broker: live while the broker takes
messages, through the on-disk queue (``gateway.buffer.MessageStore``) while it does not.

``send`` publishes at once (QoS 1) when the MQTT connection is up and nothing is queued;
otherwise the message is spooled: appended to an in-memory batch that the flusher writes to
the SQLite file in one transaction every ``flush_interval_s`` on one dedicated thread. When
the connection drops, or a PUBACK does not come within ``puback_timeout_s``, the messages
still awaiting their PUBACK are spooled too, ahead of newer ones (paho may also resend
them: delivery is at-least-once, consumers de-duplicate by device and seq). Once the broker
is back, the replayer publishes the queue in order, telemetry flagged ``historical: true``
with its original ``ts``, ``seq`` and ``session``, and deletes rows only after their PUBACK;
new messages keep being spooled behind the backlog until it is empty, so order holds. No
more than ``max_inflight`` live messages await their PUBACK: a caller past that waits, so
a slow broker slows the pollers (whose skipped ticks are counted) instead of growing
memory. ``close`` spools whatever is unacknowledged, so a restart resumes the queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
REPLAY_BATCH = 200
REPLAY_RETRY_S = 1.0


class Forwarder:
    def __init__(
        self, mqtt: MqttClient, store: MessageStore, counters: GatewayCounters, *,
        puback_timeout_s: float = 10.0, max_inflight: int = 500, flush_interval_s: float = 0.05,
    ) -> None:
        self._mqtt = mqtt
        self._store = store
        self._counters = counters
        self._puback_timeout_s = puback_timeout_s
        self._max_inflight = max_inflight
        self._flush_interval_s = flush_interval_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-buffer")
        self._live: dict[asyncio.Future[None], tuple[Outgoing, float]] = {}
        self._pending: list[Outgoing] = []
        # senders waiting for a free slot in the in-flight window, woken one per PUBACK (one
        # future each: waiting on the set of live futures cost O(window) per waiter per ack)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._backlog = store.count > 0
        self._has_backlog = asyncio.Event()
        self._spooled = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._no_waiting = False
        if self._backlog:
            self._has_backlog.set()
            log.info("resuming %d queued messages from %s", store.count, store.path)

    @property
    def depth(self) -> int:
        """Messages queued (on disk or about to be) and not yet acknowledged."""
        return self._store.count + len(self._pending)

    @property
    def inflight(self) -> int:
        return len(self._live)

    async def send(self, message: Outgoing) -> None:
        while not self._backlog and self._mqtt.connected.is_set():
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
        self._wake_all_waiters()  # they re-check and spool behind the diverted messages
        if live:
            log.debug("spooling %d unacknowledged messages", len(live))
            self._pending[:0] = [msg for msg, _t in live.values()]
            self._enter_backlog()

    # spool and disk

    def _spool(self, message: Outgoing) -> None:
        self._divert_live()  # older messages in flight go first
        self._pending.append(message)
        self._counters.queued += 1
        self._enter_backlog()

    def _enter_backlog(self) -> None:
        if not self._backlog:
            log.warning("broker unreachable; queueing messages on disk in %s", self._store.path)
        self._backlog = True
        self._has_backlog.set()
        self._spooled.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._spooled.wait()
            self._spooled.clear()
            await asyncio.sleep(self._flush_interval_s)  # gather a batch
            async with self._flush_lock:
                await self._flush_pending()

    async def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            dropped = await self._run(self._store.append, batch)
            if dropped:
                self._counters.dropped += dropped
                log.warning("queue full: dropped the %d oldest telemetry messages", dropped)

    async def _replay_forever(self) -> None:
        while True:
            await self._has_backlog.wait()
            await self._mqtt.connected.wait()
            async with self._flush_lock:
                await self._flush_pending()
                rows = await self._run(self._store.oldest, REPLAY_BATCH)
                if not rows and not self._pending:
                    self._backlog = False
                    self._has_backlog.clear()
                    log.info("queue replayed; publishing live again")
                    continue
            if rows and not await self._replay(rows):
                await asyncio.sleep(REPLAY_RETRY_S)

    async def _replay(self, rows: list[Stored]) -> bool:
        """Publish rows in order, delete the acknowledged ones; False if any was not."""
        futs = [self._mqtt.publish_nowait(r.message.topic, replay_payload(r.message), qos=1,
                                          retain=r.message.retain) for r in rows]
        await asyncio.wait(futs, timeout=self._puback_timeout_s)
        acked = [r for r, f in zip(rows, futs, strict=True)
                 if f.done() and not f.cancelled() and f.exception() is None]
        await self._run(self._store.delete, acked)
        self._counters.replayed += len(acked)
        self._counters.published += len(acked)
        return len(acked) == len(rows)

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self._check_pubacks()

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
