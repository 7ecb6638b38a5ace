"""Store-and-forward between the publisher and the broker, live first: while the MQTT
connection is up a message goes out at once (QoS 1), whatever is queued; while it is down,
messages are spooled to the on-disk queue (``gateway.buffer.MessageStore``) and replayed
beside the live ones once it is back.

``send`` publishes at once when connected, within ``max_inflight`` live messages awaiting
their PUBACK (a caller past that waits, so a slow broker slows the pollers, whose skipped
ticks are counted, instead of growing memory); otherwise it spools the message
(``gateway.spool``). When the connection drops, or a PUBACK does
not come within ``puback_timeout_s``, the live messages still awaiting theirs are spooled
too (paho may also resend them: delivery is at-least-once, consumers de-duplicate by device
and seq, or by (point, time)). With several broker nodes, a node that holds the connection
but acknowledges nothing for ``node_stall_s`` while publishes (live or replayed) wait is left
for the next one (``MqttClient.move_on``): a cluster's node can stay stuck for tens of
seconds on the queues of a node that died, while another answers. ``epoch`` counts the
connections: the publisher sends each device's first report of a new connection as a full
snapshot, so the consumers' live view is whole again at once.

The replayer publishes the queue while connected, beside the live traffic but at a bounded
share of the link: at most ``replay_window`` messages in flight (and a tenth of a second's
worth) and ``replay_rate_per_s`` per second, pausing while live senders wait for the live
window. Critical rows (alarm and state changes, device status, births) go before bulk
telemetry; telemetry is flagged ``historical: true`` with its original ``ts``, ``seq`` and
``session``; rows are deleted only after their PUBACK. The consumers tell replayed from live
by that flag, and order a device's messages by (session, seq) and ``ts``
(docs/architecture.md).

The spool and its disk (a disk that refuses writes, the buffer thread) are
``gateway.spool``. ``close`` spools whatever is unacknowledged, so a restart resumes the
queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque

from facility.mqtt import MqttClient, MqttError
from gateway.buffer import MessageStore, Outgoing, Stored
from gateway.counters import GatewayCounters
from gateway.spool import Spool

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.2
REPLAY_RETRY_S = 1.0


class Forwarder:
    def __init__(
        self, mqtt: MqttClient, store: MessageStore, counters: GatewayCounters, *,
        puback_timeout_s: float = 10.0, max_inflight: int = 500, flush_interval_s: float = 0.05,
        replay_window: int = 100, replay_rate_per_s: float = 2000.0,
        max_memory: int = 50_000, node_stall_s: float = 5.0,
    ) -> None:
        self._mqtt = mqtt
        self._spool = Spool(store, counters, flush_interval_s=flush_interval_s,
                            max_memory=max_memory)
        self._counters = counters
        self._puback_timeout_s = puback_timeout_s
        self._node_stall_s = node_stall_s
        # the last sign of the node's progress: a PUBACK, a connection, a first publish after
        # none were waiting (the client's in-flight count, live and replayed alike)
        self._progress_at = 0.0
        self._max_inflight = max_inflight
        # a batch holds a tenth of a second's worth (at least one): the pace stays smooth
        self._replay_window = max(1, min(replay_window, int(replay_rate_per_s / 10)))
        self._replay_rate = replay_rate_per_s
        self._live: dict[asyncio.Future[None], tuple[Outgoing, float]] = {}
        # senders waiting for a free slot in the in-flight window, woken one per PUBACK (one
        # future each: waiting on the set of live futures cost O(window) per waiter per ack)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._has_backlog = asyncio.Event()
        self.epoch = 0  # connections seen (the publisher re-snapshots on a new one)
        self._no_waiting = False
        if store.count:
            self._has_backlog.set()
            log.info("resuming %d queued messages from %s", store.count, store.path)

    @property
    def depth(self) -> int:
        """Messages queued (on disk or in memory) and not yet acknowledged."""
        return self._spool.depth

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
                self._queue(message)
                raise
            self._check_pubacks()
        self._queue(message)

    async def run(self) -> None:
        """Flush the spool, replay the backlog and watch PUBACKs until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._spool.flush_forever(), name="buffer-flush")
            tg.create_task(self._replay_forever(), name="buffer-replay")
            tg.create_task(self._watch_forever(), name="buffer-watch")

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for every live message in flight to be acknowledged."""
        if self._live:
            await asyncio.wait(set(self._live), timeout=timeout_s)

    async def close(self) -> None:
        """Spool every unacknowledged message to disk and close the store."""
        self._divert_live()
        await self._spool.close()

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
        live, self._live = [msg for msg, _t in self._live.values()], {}
        self._spool.salvage(live, timeout_s)

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
        self._note_sending()
        fut = self._mqtt.publish_nowait(message.topic, message.payload, qos=1,
                                        retain=message.retain)
        self._live[fut] = (message, asyncio.get_running_loop().time())
        fut.add_done_callback(self._acked)

    def _note_sending(self) -> None:
        """A publish goes out: the node's silence counts from now if none were waiting."""
        if not self._mqtt.inflight:
            self._progress_at = asyncio.get_running_loop().time()

    def _note_acked(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._progress_at = asyncio.get_running_loop().time()

    def _acked(self, fut: asyncio.Future[None]) -> None:
        entry = self._live.pop(fut, None)
        if entry is not None:
            self._wake_waiter()
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._note_acked(fut)
            if entry is not None:  # else it was spooled meanwhile and counts when replayed
                self._counters.published += 1
            return
        self._counters.publish_failures += 1
        log.warning("publish failed: %s", exc if isinstance(exc, MqttError) else repr(exc))
        if entry is not None:
            self._queue(entry[0])

    def _check_pubacks(self) -> None:
        """Leave a node that acknowledges nothing; spool the live messages when the link is
        down or the oldest PUBACK is late."""
        now = asyncio.get_running_loop().time()
        silent_s = now - self._progress_at
        if self._mqtt.inflight and silent_s > self._node_stall_s \
                and self._mqtt.move_on(f"no PUBACK for {silent_s:.1f} s"):
            self._progress_at = now  # one move per silence
        if not self._live:
            return
        if not self._mqtt.connected.is_set():
            self._divert_live()
            return
        _msg, sent_at = next(iter(self._live.values()))
        if now - sent_at > self._puback_timeout_s:
            log.warning("no PUBACK within %.0f s; queueing on disk", self._puback_timeout_s)
            self._divert_live()

    def _divert_live(self) -> None:
        live, self._live = self._live, {}
        self._wake_all_waiters()
        if live:
            log.debug("spooling %d unacknowledged messages", len(live))
            self._spool.add([msg for msg, _t in live.values()], first=True)
            self._enter_backlog()

    # spool

    def _queue(self, message: Outgoing) -> None:
        self._spool.add([message])
        self._counters.queued += 1
        self._enter_backlog()

    def _enter_backlog(self) -> None:
        if not self._has_backlog.is_set():
            log.warning("broker unreachable; queueing messages on disk in %s", self._spool.path)
        self._has_backlog.set()

    # replay

    async def _replay_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_backlog.wait()
            await self._mqtt.connected.wait()
            while self._waiters and self._mqtt.connected.is_set():
                await self._wait_for_slot()  # live first: senders are waiting for the window
            rows, memory = await self._spool.replay_batch(self._replay_window)
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

    async def _publish_replay(self, messages: list[Outgoing]) -> list[bool]:
        self._note_sending()
        futs = [self._mqtt.publish_nowait(m.topic, replay_payload(m), qos=1, retain=m.retain)
                for m in messages]
        for fut in futs:
            fut.add_done_callback(self._note_acked)
        await asyncio.wait(futs, timeout=self._puback_timeout_s)
        return [f.done() and not f.cancelled() and f.exception() is None for f in futs]

    async def _replay(self, rows: list[Stored]) -> bool:
        """Publish rows, delete the acknowledged ones; False if any was not."""
        acks = await self._publish_replay([r.message for r in rows])
        acked = [r for r, ok in zip(rows, acks, strict=True) if ok]
        await self._spool.delete(acked)
        self._counters.replayed += len(acked)
        self._counters.published += len(acked)
        return len(acked) == len(rows)

    async def _replay_memory(self, messages: list[Outgoing]) -> bool:
        """Publish messages held in memory (the disk refused them); drop the acknowledged."""
        acks = await self._publish_replay(messages)
        acked = [m for m, ok in zip(messages, acks, strict=True) if ok]
        self._spool.forget(acked)
        self._counters.replayed += len(acked)
        self._counters.published += len(acked)
        return len(acked) == len(messages)

    async def _watch_forever(self) -> None:
        was_connected = False
        while True:
            connected = self._mqtt.connected.is_set()
            if connected and not was_connected:
                self.epoch += 1
                self._progress_at = asyncio.get_running_loop().time()  # a new node's start
            was_connected = connected
            self._check_pubacks()
            await asyncio.sleep(WATCH_INTERVAL_S)


def replay_payload(message: Outgoing) -> bytes:
    """The stored payload, telemetry flagged ``historical`` (every other field unchanged)."""
    if not message.telemetry:
        return message.payload
    data = json.loads(message.payload)
    data["historical"] = True
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
