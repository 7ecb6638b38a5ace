"""The outbox relay: alarm and work-order events go from the database's ``events`` table
(the outbox every writer records its events in, in the transaction of the change: rules,
dispatch, the API) to facility/v1/{site}/alarms, once per event id.

Event ids become visible in commit order (migration 0008), so the relay keeps one watermark
per site (``outbox_relay.published_id``): it reads the events after it in id order, publishes
the alarm and work-order ones with QoS 1, each carrying its ``event_id``, and advances the
watermark only once the broker has acknowledged them all. A crash between a commit and its
publication loses nothing (the next relay reads the event from the table); a crash between
the PUBACKs and the watermark's update republishes at most that batch, under the same event
ids, so a consumer that keeps the last event id it saw drops the repeat. One relay per site
is active at a time (a session-level advisory lock; the rules processes of a partitioned site
take over from each other). ``wake`` lets a writer in the same process skip the poll
interval. At a stop (the relay cancelled) the batch in hand gets ``stop_finish_s`` to be
acknowledged and its watermark recorded, so that a restart or a hand-over does not publish
it again; past that it is left to the next relay, which publishes it again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

import psycopg
import pydantic

from facility import topics
from facility.db.active_lock import LockTiming
from facility.db.connect import connect
from facility.events import relay_watermark, set_relay_watermark, to_relay
from facility.messages import AlarmEvent, encode
from facility.mqtt import MqttClient

log = logging.getLogger(__name__)
BATCH = 500
POLL_S = 0.25  # how often the table is read when nobody in this process woke the relay
LEADER_RETRY_S = 0.5  # a dead relay's lock goes with its connection (keepalives: seconds)
RETRY_MIN_S, RETRY_MAX_S = 0.5, 2.0
STOP_FINISH_S = 2.0  # for the batch in hand at a stop (within the runner's 10 s)


class OutboxRelay:
    def __init__(
        self, database_url: str, site_id: str, client: MqttClient, *,
        published: Counter[str] | None = None, poll_s: float = POLL_S,
        puback_timeout_s: float = 10.0, stop_finish_s: float = STOP_FINISH_S,
    ) -> None:
        self._url = database_url
        self._site = site_id
        self._topic = topics.alarms(site_id)
        self._client = client
        self.published = published if published is not None else Counter()
        self._poll_s = poll_s
        self._puback_timeout_s = puback_timeout_s
        self._stop_finish_s = stop_finish_s
        self._wake = asyncio.Event()
        self.watermark = 0

    def wake(self) -> None:
        """New events were committed: read the table now."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; reconnects (with backoff) when the database goes away."""
        delay = RETRY_MIN_S
        down = False
        while True:
            try:
                # keepalives both ways: a vanished relay's lock is released within seconds
                async with await connect(self._url, application_name="rules-relay",
                                         **LockTiming().connect_kwargs()) as conn:
                    await self._lead(conn)
                    if down:
                        log.info("event relay of site %s: database back", self._site)
                        down, delay = False, RETRY_MIN_S
                    await self._relay(conn)
            except psycopg.Error as exc:
                if not down:
                    log.warning("event relay of site %s: cannot reach the database (%s); events "
                                "wait in the outbox", self._site, str(exc).strip())
                    down = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _lead(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Until this relay holds the site's relay lock (released when its connection ends)."""
        waited = False
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                                     (f"facility.relay.{self._site}",))
            row = await cur.fetchone()
            if row is not None and row[0]:
                log.info("relaying the events of site %s to %s", self._site, self._topic)
                return
            if not waited:
                log.info("another process relays the events of site %s; standing by",
                         self._site)
                waited = True
            await asyncio.sleep(LEADER_RETRY_S)

    async def _relay(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.watermark = await relay_watermark(conn, self._site)
        while True:
            rows, last = await to_relay(conn, self._site, self.watermark, BATCH)
            if last == self.watermark:
                await self._idle()
                continue
            sending = asyncio.create_task(self._send(conn, rows, last),
                                          name=f"relay[{self._site}].batch")
            try:
                await asyncio.shield(sending)  # a cancel must not cut the batch in two
            except asyncio.CancelledError:
                await self._finish_on_stop(sending, len(rows))
                raise

    async def _send(self, conn: psycopg.AsyncConnection[Any],
                    rows: list[tuple[int, dict[str, Any]]], last: int) -> None:
        await self._publish(rows)
        await set_relay_watermark(conn, self._site, last)
        self.watermark = last

    async def _finish_on_stop(self, sending: asyncio.Task[None], events: int) -> None:
        """The relay is cancelled with a batch in hand: give it ``stop_finish_s`` to be
        acknowledged and recorded (the connection stays open until then), whatever further
        cancellations come meanwhile (a wind-down repeats them); then leave it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_finish_s
        while not sending.done() and loop.time() < deadline:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({sending}, timeout=deadline - loop.time())
        if sending.done() and not sending.cancelled() and sending.exception() is None:
            return
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({sending}, timeout=1.0)
        why = (str(sending.exception()).strip() if sending.done() and not sending.cancelled()
               and sending.exception() is not None else
               f"not acknowledged by the broker in {self._stop_finish_s:g} s")
        log.warning("event relay of site %s stopped with %d events in hand (%s): the next "
                    "relay publishes them again, under the same event ids", self._site,
                    events, why)

    async def _idle(self) -> None:
        try:
            async with asyncio.timeout(self._poll_s):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _publish(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        """Publish every row; returns once the broker acknowledged each (retrying the rest)."""
        pending: list[tuple[int, str, bytes]] = []
        for event_id, payload in rows:
            try:
                ev = AlarmEvent.model_validate({**payload, "event_id": event_id})
            except pydantic.ValidationError as exc:  # written by our own code: never expected
                log.error("event %d is not an alarm event (%s); not relayed", event_id, exc)
                continue
            pending.append((event_id, ev.event, encode(ev)))
        while pending:
            await self._client.connected.wait()
            futs = [self._client.publish_nowait(self._topic, body, qos=1)
                    for _id, _name, body in pending]
            await asyncio.wait(futs, timeout=self._puback_timeout_s)
            left = []
            for item, fut in zip(pending, futs, strict=True):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self.published[item[1]] += 1
                else:
                    if not fut.done():
                        fut.cancel()
                    left.append(item)
            if left:
                log.warning("event relay: %d events not acknowledged by the broker; retrying",
                            len(left))
                await asyncio.sleep(RETRY_MIN_S)
            pending = left
