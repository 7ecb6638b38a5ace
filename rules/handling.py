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
``handle`` and ``tick`` are serialised by a lock."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pydantic

from facility import events as outbox
from facility import topics
from facility.alarm_store import unshelve_expired
from facility.messages import (
    MAX_PAYLOAD_BYTES,
    AlarmEvent,
    DeviceStatus,
    GatewayStatus,
    MessageError,
    Telemetry,
    parse,
)
from facility.procedures import Procedure
from facility.site import Site
from facility.topics import Topic, TopicError, TopicKind
from rules.alarms import (
    clear_alarm,
    group,
    raise_alarm,
    record_historical,
    ungroup,
    update_alarm,
)
from rules.current import CurrentValues, GatewaySessions, SequenceGuard
from rules.engine import (
    Action,
    ClearAlarm,
    DeviceStatusInput,
    Engine,
    EngineState,
    GatewayStatusInput,
    GroupAlarms,
    Input,
    RaiseAlarm,
    SaveRuleState,
    TelemetryInput,
    UngroupAlarms,
    UpdateAlarm,
)
from rules.history import HistoricalAlarm, History
from rules.state_store import save_rule_state
from rules.work_orders import open_for_alarm

log = logging.getLogger(__name__)
T = TypeVar("T")
CONSUMER = "rules"
RETRY_MIN_S, RETRY_MAX_S = 0.2, 5.0  # backoff while the database is unreachable
ATTEMPTS = 3  # tries of a message that fails for another reason, then a dead letter
TOPIC_CACHE = 100_000  # parsed topics remembered (a site's topics are a fixed set)


class _Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"  # the actions were refused: logged, state not advanced
    UNAVAILABLE = "unavailable"  # the database is unreachable: retry the same input


@dataclass(frozen=True, slots=True)
class _Replayed:
    """A historical (replayed) telemetry message: evaluated for the record only."""

    device: str
    msg: Telemetry


class RulesService:
    """Per-site state between messages; ``handle`` and ``tick`` are serialised by a lock."""

    def __init__(
        self, site: Site, engine: Engine, procedures: dict[str, Procedure], state: EngineState,
        conn: psycopg.AsyncConnection[Any], device_ids: dict[str, int],
        publish: Any, sources: Sequence[str] | None = None, database_url: str = "",
    ) -> None:
        self.site = site
        self.engine = engine
        self.procedures = procedures
        self.state = state
        self.conn = conn
        self.device_ids = device_ids
        self._publish = publish
        self._values = CurrentValues()
        self._sessions = GatewaySessions()
        self._order = SequenceGuard()
        self._topics: dict[str, Topic] = {}
        self._history = History(engine)
        self._dirty: set[str] = set()  # devices whose last step failed: evaluate every rule
        self._lock = asyncio.Lock()
        self._rule_procedures = {r.id: r.procedure for r in engine.rules if r.procedure}
        self._rule_defs = {r.id: r for r in engine.rules}
        # the alarm sources this process owns (None: the whole site)
        self._sources = None if sources is None else list(sources)
        # psycopg's conn.info.dsn has no password: reconnect with the URL we were given
        self._database_url = database_url or conn.info.dsn
        self._db_down_since: float | None = None
        self._failure = ""  # why the last step failed
        self.dead_letters = 0
        self.messages = 0
        self.stale = 0

    @property
    def database_up(self) -> bool:
        """False while messages are held because the database is unreachable."""
        return self._db_down_since is None

    async def handle(self, topic: str, payload: bytes) -> None:
        """Handle one message, or dead-letter it with the reason; never raises (but
        cancellation): once it returns, the message may be acknowledged."""
        self.messages += 1
        try:
            inp = self._input(topic, payload)
        except (MessageError, TopicError) as exc:
            await self._dead_letter(topic, payload, getattr(exc, "reason", str(exc)))
            return
        except Exception as exc:  # a bug reading it: retrying would not help
            log.exception("reading a message on %s failed", topic)
            await self._dead_letter(topic, payload, f"could not be read: {exc!r}")
            return
        failure: str | None = None
        if isinstance(inp, _Replayed):
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
                delay = await _backoff(delay)
                continue
            if attempt >= ATTEMPTS:
                break
            attempt += 1
            await asyncio.sleep(RETRY_MIN_S * attempt)
        device = getattr(inp, "device", None)
        if device is not None:
            self._dirty.add(device)
        return f"handling failed {ATTEMPTS} times: {self._failure}"

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
                    opened = await self._reconcile(now)
                    await outbox.record(self.conn, self.site.id, opened)
            except psycopg.Error as exc:
                if self._unavailable(exc):
                    await self._database_lost(exc)
                else:
                    log.exception("alarm housekeeping failed; will retry")
                return
        for ev in [*events, *opened]:
            self._publish(ev)

    def _topic(self, name: str) -> Topic:
        """A parsed topic of this site (cached: parsing is a tenth of the work per message)."""
        topic = self._topics.get(name)
        if topic is None:
            topic = topics.parse(name)
            if topic.site != self.site.id:
                raise TopicError(name, f"site {topic.site} is not {self.site.id}")
            if len(self._topics) < TOPIC_CACHE:
                self._topics[name] = topic
        return topic

    def _input(self, name: str, payload: bytes) -> Input | _Replayed | None:
        """The engine input of a message; MessageError / TopicError for a bad one."""
        topic = self._topic(name)
        if topic.kind is TopicKind.GATEWAY_STATUS:
            assert topic.gateway is not None
            gs = parse(GatewayStatus, payload)
            if not self._sessions.accept(topic.gateway, gs):
                log.info("ignored stale death of gateway %s (session %s)", topic.gateway,
                         gs.session)
                return None
            return GatewayStatusInput(topic.gateway, gs.state == "online")
        device = self.site.devices.get(topic.device or "")
        if device is None or device.gateway != topic.gateway:
            raise MessageError(f"device {topic.device} is not a device of gateway "
                               f"{topic.gateway} at site {self.site.id}")
        if topic.kind is TopicKind.DEVICE_STATUS:
            ds = parse(DeviceStatus, payload)
            if ds.state == "offline":
                self._values.forget(device.id)
            return DeviceStatusInput(device.id, ds.state == "online")
        if topic.kind is TopicKind.TELEMETRY:
            tm = _telemetry(payload)
            if tm.historical:
                return _Replayed(device.id, tm)
            last = self._order.check(device.id, tm)
            if last is not None:
                self.stale += 1
                log.info("ignored telemetry of %s: seq %d of session %s is not after %d "
                         "(duplicate or out of order)", device.id, tm.seq, tm.session, last)
                return None
            values, changed = self._values.merge(device.id, tm)
            if device.id in self._dirty:
                self._dirty.discard(device.id)
                return TelemetryInput(device.id, values)
            return TelemetryInput(device.id, values, changed=changed)
        return None  # births carry nothing the rules need yet

    async def _step(self, run: Any) -> _Outcome:
        """Run the engine and apply its actions; on failure the state is not advanced."""
        now = datetime.now(UTC)
        try:
            new_state, actions = run(now)
        except Exception as exc:  # a rule that raises on these values: the engine's bug
            log.exception("evaluating the rules failed")
            self._failure = f"rule evaluation raised {exc!r}"
            return _Outcome.FAILED
        if not actions:
            self.state = new_state
            return _Outcome.DONE
        try:
            events = await self._apply(actions)
        except Exception as exc:
            if self._unavailable(exc):
                await self._database_lost(exc)
                return _Outcome.UNAVAILABLE
            log.exception("applying %d rule actions failed", len(actions))
            self._failure = f"the database refused the rule actions: {exc}"
            return _Outcome.FAILED
        self._database_back()
        self.state = new_state
        for ev in events:
            self._publish(ev)
        return _Outcome.DONE

    def _unavailable(self, exc: BaseException) -> bool:
        """The database cannot be reached (as opposed to refusing what we asked)."""
        return isinstance(exc, psycopg.OperationalError) or self.conn.broken or self.conn.closed

    def _database_back(self) -> None:
        if self._db_down_since is not None:
            log.info("database back after %.1f s; rules resume",
                     asyncio.get_running_loop().time() - self._db_down_since)
            self._db_down_since = None

    async def _database_lost(self, exc: Exception) -> None:
        if self._db_down_since is None:
            self._db_down_since = asyncio.get_running_loop().time()
            log.warning("database unreachable (%s): holding messages, unacknowledged, and "
                        "retrying until it is back", str(exc).strip() or type(exc).__name__)
        await self._reconnect_if_broken(quiet=True)

    async def _apply(self, actions: Sequence[Action]) -> list[AlarmEvent]:
        """Every action and its outbox events in one transaction (events recorded last)."""
        events: list[AlarmEvent] = []
        async with self.conn.transaction():
            for act in actions:
                if isinstance(act, RaiseAlarm):
                    events += await self._raise(act)
                elif isinstance(act, UpdateAlarm):
                    events += await update_alarm(self.conn, act)
                    log.info("alarm %s/%s updated: %s", act.source, act.alarm_type, act.message)
                elif isinstance(act, ClearAlarm):
                    events += await clear_alarm(self.conn, act)
                    log.info("alarm %s/%s cleared", act.source, act.alarm_type)
                elif isinstance(act, GroupAlarms):
                    grouped = await group(self.conn, act)
                    if grouped:
                        log.info("%d alarms grouped under %s/%s", len(grouped), *act.parent)
                    events += grouped
                elif isinstance(act, UngroupAlarms):
                    events += await ungroup(self.conn, act)
                elif isinstance(act, SaveRuleState):
                    await save_rule_state(self.conn, act)
            await outbox.record(self.conn, self.site.id, events)
        return events

    async def _raise(self, act: RaiseAlarm) -> list[AlarmEvent]:
        device_id = self.device_ids.get(act.device) if act.device else None
        alarm, events = await raise_alarm(self.conn, self.site.id, device_id, act)
        how = "raised" if alarm.inserted else "repeated"
        if alarm.suppressed:
            how += f" suppressed under {act.suppressed_by}"
        log.info("alarm %s/%s %s (id %d): %s", act.source, act.alarm_type, how, alarm.id,
                 act.message)
        if act.procedure is None or not alarm.wants_work_order:
            return events
        if not alarm.inserted and alarm.work_order_id is not None \
                and await self._order_open(alarm.work_order_id):
            return events  # a repeat of an alarm whose order is still open
        return events + await self._open_work_order(
            device_id=device_id, source=act.source, fault=act.alarm_type, alarm_id=alarm.id,
            procedure=act.procedure, description=act.message, now=act.at)

    async def _open_work_order(
        self, *, device_id: int | None, source: str, fault: str, alarm_id: int,
        procedure: str, description: str, now: datetime,
    ) -> list[AlarmEvent]:
        """The one place an alarm opens (or links to) its work order."""
        return await open_for_alarm(
            self.conn, site_id=self.site.id, device_id=device_id, source=source, fault=fault,
            alarm_id=alarm_id, procedure=self.procedures[procedure], description=description,
            now=now)

    async def _order_open(self, wo_id: int) -> bool:
        cur = await self.conn.execute(
            "SELECT state NOT IN ('resolved', 'closed', 'cancelled') FROM work_orders"
            " WHERE id = %s", (wo_id,))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _reconcile(self, now: datetime) -> list[AlarmEvent]:
        """Work orders for active, annunciated alarms of rules with a procedure that have
        none (released from a group, returned to service); in the caller's transaction."""
        cur = await self.conn.execute(
            "SELECT id, device_id, source, alarm_type, rule_id, message FROM alarms"
            " WHERE site_id = %s AND active AND state <> 'normal' AND NOT suppressed"
            " AND NOT out_of_service AND NOT historical AND work_order_id IS NULL"
            " AND rule_id = ANY(%s) AND (%s::text[] IS NULL OR source = ANY(%s))"
            " ORDER BY id FOR UPDATE SKIP LOCKED",
            (self.site.id, list(self._rule_procedures), self._sources, self._sources))
        events: list[AlarmEvent] = []
        for alarm_id, device_id, source, fault, rule_id, text in await cur.fetchall():
            log.info("alarm %s/%s (id %d) annunciates again: opening its work order",
                     source, fault, alarm_id)
            events += await self._open_work_order(
                device_id=device_id, source=source, fault=fault, alarm_id=alarm_id,
                procedure=self._rule_procedures[rule_id], description=text, now=now)
        return events

    async def _record_history(self, rep: _Replayed) -> str | None:
        """Evaluate a replayed message for the record: faults over become closed alarms;
        the reason when they could not be recorded."""
        try:
            items = self._history.feed(rep.device, rep.msg, self._values.get(rep.device))
        except Exception as exc:
            log.exception("evaluating replayed telemetry of %s failed", rep.device)
            return f"rule evaluation raised {exc!r}"
        if not items:
            return None
        device_id = self.device_ids.get(rep.device)

        async def write() -> list[AlarmEvent]:
            events: list[AlarmEvent] = []
            async with self._lock, self.conn.transaction():
                for item in items:
                    alarm_id, evs = await record_historical(self.conn, self.site.id, device_id,
                                                            item)
                    events += evs
                    if alarm_id is not None:
                        events += await self._follow_up(item, alarm_id, device_id)
                await outbox.record(self.conn, self.site.id, events)
            return events

        events = await self._until_stored(write, f"recording {len(items)} replayed alarms",
                                          attempts=ATTEMPTS)
        if events is None:
            return f"recording replayed alarms failed {ATTEMPTS} times: {self._failure}"
        log.info("recorded %d alarms of %s from replayed telemetry", len(items), rep.device)
        for ev in events:
            self._publish(ev)
        return None

    async def _follow_up(self, item: HistoricalAlarm, alarm_id: int,
                         device_id: int | None) -> list[AlarmEvent]:
        """A critical fault (or one of a rule marked ``follow_up``) that began and ended while
        its gateway was cut off still reaches a person: a work order with its procedure,
        marked as found after the fact."""
        act = item.raised
        rule = self._rule_defs.get(act.rule_id)
        if rule is None or not rule.wants_follow_up or act.procedure is None \
                or act.suppressed_by is not None:
            return []
        log.warning("%s/%s began and ended while the gateway was cut off (%s to %s): opening "
                    "a follow-up work order", act.source, act.alarm_type, act.at.isoformat(),
                    item.cleared_at.isoformat())
        text = (f"{act.message} (事后发现 found after the fact: {act.at:%Y-%m-%d %H:%M:%S}"
                f" - {item.cleared_at:%H:%M:%S} UTC, 网关断线期间发生并已恢复 began and ended"
                " while the gateway was cut off)")
        return await open_for_alarm(
            self.conn, site_id=self.site.id, device_id=device_id, source=act.source,
            fault=act.alarm_type, alarm_id=alarm_id, procedure=self.procedures[act.procedure],
            description=text, now=datetime.now(UTC), after_the_fact=True)

    async def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        self.dead_letters += 1
        log.warning("refused message on %s: %s", topic, reason)

        async def write() -> bool:
            await self.conn.execute(
                "INSERT INTO dead_letters (consumer, topic, payload, reason)"
                " VALUES (%s, %s, %s, %s)", (CONSUMER, topic, payload, reason))
            return True

        await self._until_stored(write, "storing a dead letter", attempts=ATTEMPTS)

    async def _until_stored(self, write: Callable[[], Awaitable[T]], what: str, *,
                            attempts: int = 1) -> T | None:
        """``write()``, retried with backoff while the database is unreachable (the message
        stays unacknowledged meanwhile); None, logged, if the database refuses it
        ``attempts`` times."""
        delay = RETRY_MIN_S
        attempt = 1
        while True:
            try:
                result = await write()
            except psycopg.Error as exc:
                if self._unavailable(exc):
                    await self._database_lost(exc)
                    delay = await _backoff(delay)
                    continue
                self._failure = str(exc).strip() or type(exc).__name__
                if attempt >= attempts:
                    log.exception("%s failed", what)
                    return None
                attempt += 1
                await asyncio.sleep(RETRY_MIN_S * attempt)
                continue
            self._database_back()
            return result

    async def _reconnect_if_broken(self, *, quiet: bool = False) -> None:
        if self.conn.closed or self.conn.broken:
            if not quiet:
                log.warning("database connection lost; reconnecting")
            try:
                async with asyncio.timeout(10):
                    conn = await psycopg.AsyncConnection.connect(
                        self._database_url, autocommit=True)
            except (psycopg.Error, TimeoutError) as exc:
                (log.debug if quiet else log.warning)("database reconnect failed: %s", exc)
                return
            with contextlib.suppress(psycopg.Error):
                await self.conn.close()
            self.conn = conn


async def _backoff(delay: float) -> float:
    """Wait ``delay`` seconds; the next delay (doubled, at most RETRY_MAX_S)."""
    await asyncio.sleep(delay)
    return min(delay * 2, RETRY_MAX_S)


def _telemetry(payload: bytes) -> Telemetry:
    """Parse telemetry with pydantic's JSON parser (half the cost of ``parse``, on every
    message); anything it refuses goes through ``parse``, which says why."""
    if len(payload) <= MAX_PAYLOAD_BYTES:
        try:
            return Telemetry.model_validate_json(payload)
        except pydantic.ValidationError:
            pass
    return parse(Telemetry, payload)
