"""The event hub: ONE reader of the event outbox per API process, fanned out to every live
stream (api.stream), so that open streams cost one query per burst of events, not one per
stream, and hold no pooled connection while they wait.

- A connection of its own (not from the pool) LISTENs on ``facility_events``. At each wake-up,
  and at least once per heartbeat period, it reads the events after the last one it read
  (``last_id``), oldest first in batches, formats each as SSE once and appends it to the
  backlog of every subscription of its site (or of every site). Notifications that arrive
  during a read wait in psycopg for the next ``notifies()``, so a burst costs one or two reads
  and none is lost. If the connection drops, the hub reconnects with capped, jittered backoff
  and reads what it missed: late, never lost.
- ``subscribe`` does not await: a subscription registered when the hub had read up to
  ``last_id`` gets every later event in its backlog, exactly once. It is first handed the events
  after its cursor from the ``replay`` newest events kept in memory; a cursor older than those
  is read from the database by the stream itself (``Subscription.catch_up_to``).
- A backlog holds at most ``backlog`` events. A stream that cannot keep up (its client stopped
  reading) has its backlog dropped, is marked overflowed and counted; it resumes from the last
  id it sent, as a reconnecting page would. Memory per stream is bounded and the client loses
  nothing.
- Every heartbeat period one query checks the tokens of all subscriptions; a subscription whose
  token was revoked or has expired is ended (the stream sends ``signed_out``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api import tokens
from api.sse import format_event
from facility import events
from facility.db.connect import connect
from facility.scope import Scope

log = logging.getLogger(__name__)
BATCH = 500
MAX_BACKOFF_S = 30.0
CATCH_UP_READERS = 2
"""Streams reading the outbox from the database at once (resuming from before what the hub
keeps in memory); the others wait their turn, so catching up never takes the whole pool."""
WAKE_SLICE = 20
"""Streams woken per turn of the event loop during a fan-out (``EventHub.wake_streams``): about
a millisecond of writing here (each costs ~50 us, half of it the socket's send), so a request
that arrives during a fan-out to thousands of streams waits that long per step, not for all."""
Ending = Literal["closing", "signed_out"]


@dataclass(frozen=True, slots=True)
class HubLimits:
    heartbeat_s: float = 15.0  # heartbeat comment, token check and safety read
    backlog: int = 1000  # events waiting for one stream before it counts as fallen behind
    replay: int = 5000  # newest events kept in memory for streams that resume


@dataclass(slots=True)
class HubCounters:
    reads: int = 0  # queries of the outbox by the hub
    events: int = 0  # events read and fanned out
    overflows: int = 0  # backlogs dropped: a stream fell behind and resumed from its last id
    signed_out: int = 0  # streams ended by a revoked or expired token


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    site: str
    building: str | None  # what the event is about (None: the site as a whole)
    text: bytes  # the SSE message, formatted once for every stream


class Subscription:
    """One live stream's place in the hub: its backlog of events to send and whether it must
    end. The hub writes it; one stream reads it."""

    def __init__(self, site: str | None, token_digest: bytes, start: int, capacity: int,
                 scope: Scope) -> None:
        self.site = site
        self.scope = scope  # the user's (facility.scope): only its events are offered
        self.token_digest = token_digest
        self.start = start  # the stream has sent everything up to this id
        self.catch_up_to: int | None = None  # read (start, catch_up_to] from the database first
        self.overflowed = False
        self.ended: Ending | None = None
        self._capacity = capacity
        self._backlog: list[Event] = []
        self._wake = asyncio.Event()

    def offer(self, event: Event) -> bool:
        """Append to the backlog (``wake`` tells the stream); False, and the backlog
        dropped, when it was full."""
        if len(self._backlog) >= self._capacity:
            self._backlog = []
            self.overflowed = True
            return False
        self._backlog.append(event)
        return True

    def wake(self) -> None:
        self._wake.set()

    def preload(self, backlog: list[Event]) -> None:
        self._backlog = backlog
        self.wake()

    def end(self, reason: Ending) -> None:
        self.ended = reason
        self.wake()

    def take(self) -> list[Event]:
        backlog, self._backlog = self._backlog, []
        return backlog

    async def wait(self, timeout_s: float) -> bool:
        """True once there is something to do (events, an overflow, an end); False after
        ``timeout_s`` of nothing."""
        if self._backlog or self.overflowed or self.ended:
            return True
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True


class EventHub:
    """Reads the outbox once for every live stream of this process."""

    def __init__(self, database_url: str, pool: AsyncConnectionPool[Any],
                 limits: HubLimits | None = None) -> None:
        self._url = database_url
        self._pool = pool
        self.limits = limits or HubLimits()
        self.last_id = 0  # every event up to here has been read and fanned out
        self._recent: deque[Event] = deque()
        self._floor = 0  # every event after this id is in _recent (up to last_id)
        self._subs: dict[str | None, set[Subscription]] = {}
        self._unwoken: dict[Subscription, None] = {}  # given events, not yet woken (in order)
        self.catch_up_slots = asyncio.Semaphore(CATCH_UP_READERS)
        self.counters = HubCounters()
        self.connected = False
        self.closing = False  # set at shutdown: every stream ends at once

    @property
    def streams(self) -> int:
        return sum(len(group) for group in self._subs.values())

    async def prime(self) -> None:
        """Start at the newest event, with the ``replay`` newest in memory (before serving:
        a stream that starts 'now' must know where now is)."""
        async with self._pool.connection() as conn:
            rows = await events.latest(conn, self.limits.replay)
        self._floor = rows[0][0] - 1 if len(rows) == self.limits.replay else 0
        for row in rows:
            self._remember(_event(row))

    def subscribe(self, after: int | None, site: str | None, token_digest: bytes,
                  scope: Scope | None = None) -> Subscription:
        """A subscription for a stream that has seen everything up to ``after`` (None: now),
        of one site or (None) of all, and only of the user's ``scope`` (None: every site)."""
        start = self.last_id if after is None else after
        sub = Subscription(site, token_digest, start, self.limits.backlog, scope or Scope())
        if self.closing:
            sub.end("closing")
            return sub
        if start < self._floor:
            sub.catch_up_to = self.last_id
        else:
            sub.preload(self._replay(start, site, sub.scope))
        self._subs.setdefault(site, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        group = self._subs.get(sub.site)
        if group is not None:
            group.discard(sub)
            if not group:
                del self._subs[sub.site]

    async def close(self) -> None:
        """End every live stream now (server shutdown), so each response finishes cleanly."""
        self.closing = True
        for sub in list(self._all()):
            sub.end("closing")
        self._subs.clear()

    async def run(self) -> None:
        """Follow the outbox and check the streams' tokens until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow(), name="event-hub[follow]")
            tasks.create_task(self._check_tokens(), name="event-hub[tokens]")

    def _all(self) -> Iterator[Subscription]:
        return itertools.chain.from_iterable(self._subs.values())

    def _replay(self, after: int, site: str | None, scope: Scope) -> list[Event]:
        newer: list[Event] = []
        for event in reversed(self._recent):
            if event.id <= after:
                break
            if (site is None or event.site == site) and scope.sees(event.site, event.building):
                newer.append(event)
        newer.reverse()
        return newer

    def _remember(self, event: Event) -> None:
        if len(self._recent) >= self.limits.replay:
            self._floor = self._recent.popleft().id
        self._recent.append(event)
        self.last_id = event.id

    def publish(self, event: Event) -> None:
        """Hand one event (the next after ``last_id``) to every subscription of its site;
        ``wake_streams`` then tells them."""
        self._remember(event)
        self.counters.events += 1
        audience: Iterable[Subscription] = itertools.chain(
            self._subs.get(None, ()), self._subs.get(event.site, ()))
        fell_behind = []
        for sub in audience:
            if not sub.scope.sees(event.site, event.building):
                continue  # another estate's (issue 23)
            if not sub.offer(event):
                fell_behind.append(sub)
            self._unwoken[sub] = None
        for sub in fell_behind:
            self.unsubscribe(sub)
            self.counters.overflows += 1

    async def wake_streams(self) -> None:
        """Wake the streams that were given events, ``WAKE_SLICE`` per turn of the event loop,
        so that requests that arrive during a fan-out to thousands of streams go on between
        slices instead of waiting for all of it."""
        while self._unwoken:
            for sub in list(itertools.islice(self._unwoken, WAKE_SLICE)):
                del self._unwoken[sub]
                sub.wake()
            await asyncio.sleep(0)

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            rows = await events.every_site_since(conn, self.last_id, BATCH)
            self.counters.reads += 1
            for row in rows:
                self.publish(_event(row))
            await self.wake_streams()
            if len(rows) < BATCH:
                return

    async def _follow(self) -> None:
        """LISTEN and read until cancelled, reconnecting with capped, jittered backoff."""
        backoff_s = 0.5
        while True:
            try:
                async with await connect(self._url, application_name="api-events") as conn:
                    await conn.execute(f"LISTEN {events.CHANNEL}")
                    log.info("event hub following the outbox from event %d%s", self.last_id,
                             "" if self.counters.reads == 0 else " (reconnected)")
                    self.connected, backoff_s = True, 0.5
                    while True:
                        await self._read(conn)
                        async for _ in conn.notifies(timeout=self.limits.heartbeat_s,
                                                     stop_after=1):
                            pass
            except psycopg.Error as exc:
                if self.connected:
                    log.warning("event hub lost its database connection: %s", exc)
                self.connected = False
            await asyncio.sleep(backoff_s * random.uniform(0.8, 1.2))
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    async def _check_tokens(self) -> None:
        """Every heartbeat period, end the subscriptions whose token is no longer valid."""
        failing = False
        while True:
            await asyncio.sleep(self.limits.heartbeat_s)
            subs = list(self._all())
            if not subs:
                continue
            try:
                async with self._pool.connection() as conn:
                    valid = await tokens.valid_digests(conn, {s.token_digest for s in subs})
            except (psycopg.Error, PoolTimeout) as exc:
                if not failing:
                    log.warning("cannot check the live streams' tokens: %s", exc)
                failing = True
                continue
            if failing:
                log.info("checking the live streams' tokens again")
                failing = False
            for sub in subs:
                if sub.token_digest not in valid and sub.ended is None:
                    sub.end("signed_out")
                    self.unsubscribe(sub)
                    self.counters.signed_out += 1


def _event(row: events.SiteEvent) -> Event:
    event_id, site, building, kind, payload = row
    return Event(event_id, site, building, format_event(event_id, kind, payload).encode())


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("event hub stopped: live streams get no more events", exc_info=exc)


@contextlib.asynccontextmanager
async def running(hub: EventHub) -> AsyncIterator[EventHub]:
    """The hub following the outbox in a background task for the duration of the block."""
    task = asyncio.create_task(hub.run(), name="event-hub")
    task.add_done_callback(_log_crash)
    try:
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
