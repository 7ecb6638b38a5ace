"""One message at a time, from MQTT to the database: ``RulesService`` turns a message into the
pure engine's input, runs the engine and applies its actions (alarms, work orders, rule
state and their outbox events) in one transaction, then hands the events to ``publish``
(after the commit: the outbox relay puts them on MQTT, dispatch assigns new orders).

If the transaction fails, the engine state is not advanced, so the next tick or message
tries again. A malformed message is logged and kept in ``dead_letters``; it never stops the
service. A message whose handling fails for a reason other than the database being
unreachable (the database refused the writes, the engine raised) is tried ``ATTEMPTS``
times, then dead-lettered with the reason, so the caller acknowledges a message only once it
is handled or dead-lettered. Live telemetry older than what a device already reported (same
gateway session, seq not above the last) is a duplicate or out of order: counted in
``stale``, logged, not evaluated. While the database is unreachable a message is held and
retried with backoff (the caller does not acknowledge it meanwhile); historical (replayed)
telemetry is evaluated for the record only (``rules.history``): a critical fault over before
the replay is recorded and opens a follow-up work order marked found after the fact.
A gateway silent past its heartbeat window (``rules.liveness``; its Will may have died with
a broker node) is judged offline as if its Will had arrived (``judge_silence``).
``handle`` and ``tick`` are serialised by a lock. Reading a message is ``rules.message_reader``,
writing the actions ``rules.action_writer``, riding out the database ``rules.database_guard``."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from facility import events as outbox
from facility.alarm_store import unshelve_expired
from facility.messages import AlarmEvent, MessageError
from facility.procedures import Procedure
from facility.site import Site
from facility.topics import TopicError, TopicKind
from rules.action_writer import ActionWriter
from rules.alarms import record_historical
from rules.database_guard import RETRY_MIN_S, DatabaseGuard, backoff
from rules.engine import Engine
from rules.engine_types import EngineState, GatewayStatusInput, Input
from rules.history import History
from rules.liveness import Liveness
from rules.message_reader import MessageReader, Replayed

log = logging.getLogger(__name__)
CONSUMER = "rules"
ATTEMPTS = 3  # tries of a message that fails for another reason, then a dead letter


class _Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"  # the actions were refused: logged, state not advanced
    UNAVAILABLE = "unavailable"  # the database is unreachable: retry the same input


class RulesService:
    """Per-site state between messages; ``handle`` and ``tick`` are serialised by a lock."""

    def __init__(
        self, site: Site, engine: Engine, procedures: dict[str, Procedure], state: EngineState,
        conn: psycopg.AsyncConnection[Any], device_ids: dict[str, int],
        publish: Any, sources: Sequence[str] | None = None, database_url: str = "",
    ) -> None:
        self.site = site
        self.engine = engine
        self.state = state
        self.db = DatabaseGuard(conn, database_url)
        self._publish = publish
        self._reader = MessageReader(site)
        self._writer = ActionWriter(lambda: self.db.conn, site, procedures, device_ids,
                                    engine.rules, sources)
        self._device_ids = device_ids
        self._history = History(engine)
        self._lock = asyncio.Lock()
        self.dead_letters = 0
        self.messages = 0
        self.liveness: Liveness | None = None  # judge gateways by heartbeats when set
        self.handled = 0

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        return self.db.conn

    @property
    def database_up(self) -> bool:
        """False while messages are held because the database is unreachable."""
        return self.db.up

    @property
    def stale(self) -> int:
        """Live telemetry ignored as a duplicate or out of order."""
        return self._reader.stale

    async def handle(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Handle one message, or dead-letter it with the reason; never raises (but
        cancellation): once it returns, the message may be acknowledged. ``retain``: it
        came from the broker's store, so it says nothing of the gateway being alive now.
        ``messages`` counts those taken, ``handled`` those done with (what a test waits for
        before it asserts that a message changed nothing)."""
        self.messages += 1
        await self._handle(topic, payload, retain)
        self.handled += 1

    async def _handle(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            inp = self._reader.read(topic, payload)
        except (MessageError, TopicError) as exc:
            await self._dead_letter(topic, payload, getattr(exc, "reason", str(exc)))
            return
        except Exception as exc:  # a bug reading it: retrying would not help
            log.exception("reading a message on %s failed", topic)
            await self._dead_letter(topic, payload, f"could not be read: {exc!r}")
            return
        if not retain:
            self._heard(topic, inp)
        failure: str | None = None
        if isinstance(inp, Replayed):
            failure = await self._record_history(inp)
        elif inp is not None:
            async with self._lock:
                failure = await self._step_held(
                    inp, lambda now: self.engine.evaluate(self.state, inp, now))
        if failure is not None:
            await self._dead_letter(topic, payload, failure)

    async def _step_held(self, inp: Input, run: Any) -> str | None:
        """Step on a message; while the database is unreachable, hold it (and, since the
        consumer waits, every message after it, unacknowledged) and retry with backoff, so
        no accepted message is lost. Any other failure is retried ``ATTEMPTS`` times; then
        the device's rules are all evaluated on its next message and the reason is returned
        (the caller dead-letters the message)."""
        delay = RETRY_MIN_S
        attempt = 1
        while True:
            outcome = await self._step(run)
            if outcome is _Outcome.DONE:
                return None
            if outcome is _Outcome.UNAVAILABLE:
                delay = await backoff(delay)
                continue
            if attempt >= ATTEMPTS:
                break
            attempt += 1
            await asyncio.sleep(RETRY_MIN_S * attempt)
        device = getattr(inp, "device", None)
        if device is not None:
            self._reader.dirty.add(device)
        return f"handling failed {ATTEMPTS} times: {self.db.failure}"

    def _heard(self, topic: str, inp: Input | Replayed | None) -> None:
        """A live message of a gateway's subtree, but its death (a Will or an old
        session's), is a sign of life."""
        if self.liveness is None or (isinstance(inp, GatewayStatusInput) and not inp.online):
            return
        parsed = self._reader.topic(topic)
        if parsed.gateway is not None and not (
                parsed.kind is TopicKind.GATEWAY_STATUS and inp is None):
            self.liveness.heard(parsed.gateway, asyncio.get_running_loop().time())

    async def judge_silence(self, *, caught_up: bool) -> None:
        """Gateways silent past their heartbeat window go offline, once each."""
        if self.liveness is None:
            return
        now = asyncio.get_running_loop().time()
        for gateway in self.liveness.newly_silent(now, caught_up=caught_up):
            log.warning("gateway %s silent for %d heartbeats: judged offline (its Will may "
                        "have died with a broker node)", gateway,
                        self.liveness.heartbeats[gateway].misses)
            inp = GatewayStatusInput(gateway, online=False)
            async with self._lock:
                failure = await self._step_held(
                    inp, lambda now, i=inp: self.engine.evaluate(self.state, i, now))
            if failure is not None:
                log.warning("gateway %s judged offline, not recorded: %s", gateway, failure)

    async def tick(self) -> None:
        async with self._lock:
            await self._step(lambda now: self.engine.tick(self.state, now))

    async def housekeeping(self) -> None:
        """Unshelve expired shelves, and open the work orders of alarms that annunciate again
        (released from a group, back in service) and have none yet."""
        async with self._lock:
            now = datetime.now(UTC)
            try:
                events = await unshelve_expired(self.conn, now, site_id=self.site.id)
                async with self.conn.transaction():
                    opened = await self._writer.reconcile(now)
                    await outbox.record(self.conn, self.site.id, opened)
            except psycopg.Error as exc:
                if self.db.unavailable(exc):
                    await self.db.lost(exc)
                else:
                    log.exception("alarm housekeeping failed; will retry")
                return
        for ev in [*events, *opened]:
            self._publish(ev)

    async def _step(self, run: Any) -> _Outcome:
        """Run the engine and apply its actions; on failure the state is not advanced."""
        now = datetime.now(UTC)
        try:
            new_state, actions = run(now)
        except Exception as exc:  # a rule that raises on these values: the engine's bug
            log.exception("evaluating the rules failed")
            self.db.failure = f"rule evaluation raised {exc!r}"
            return _Outcome.FAILED
        if not actions:
            self.state = new_state
            return _Outcome.DONE
        try:
            events = await self._writer.apply(actions)
        except Exception as exc:
            if self.db.unavailable(exc):
                await self.db.lost(exc)
                return _Outcome.UNAVAILABLE
            log.exception("applying %d rule actions failed", len(actions))
            self.db.failure = f"the database refused the rule actions: {exc}"
            return _Outcome.FAILED
        self.db.back()
        self.state = new_state
        for ev in events:
            self._publish(ev)
        return _Outcome.DONE

    async def _record_history(self, rep: Replayed) -> str | None:
        """Evaluate a replayed message for the record: faults over become closed alarms;
        the reason when they could not be recorded."""
        try:
            items = self._history.feed(rep.device, rep.msg, self._reader.values.get(rep.device))
        except Exception as exc:
            log.exception("evaluating replayed telemetry of %s failed", rep.device)
            return f"rule evaluation raised {exc!r}"
        if not items:
            return None
        device_id = self._device_ids.get(rep.device)

        async def write() -> list[AlarmEvent]:
            events: list[AlarmEvent] = []
            async with self._lock, self.conn.transaction():
                for item in items:
                    alarm_id, evs = await record_historical(self.conn, self.site.id, device_id,
                                                            item)
                    events += evs
                    if alarm_id is not None:
                        events += await self._writer.follow_up(item, alarm_id, device_id)
                await outbox.record(self.conn, self.site.id, events)
            return events

        events = await self.db.until_stored(write, f"recording {len(items)} replayed alarms",
                                            attempts=ATTEMPTS)
        if events is None:
            return f"recording replayed alarms failed {ATTEMPTS} times: {self.db.failure}"
        log.info("recorded %d alarms of %s from replayed telemetry", len(items), rep.device)
        for ev in events:
            self._publish(ev)
        return None

    async def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        self.dead_letters += 1
        log.warning("refused message on %s: %s", topic, reason)

        async def write() -> bool:
            await self.conn.execute(
                "INSERT INTO dead_letters (consumer, topic, payload, reason)"
                " VALUES (%s, %s, %s, %s)", (CONSUMER, topic, payload, reason))
            return True

        await self.db.until_stored(write, "storing a dead letter", attempts=ATTEMPTS)
