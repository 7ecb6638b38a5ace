"""The rules service: MQTT v1 telemetry and device / gateway status in, alarms and work orders
out.

``run_rules`` checks the schema, syncs the site registry and the procedures, loads the saved
rule state, subscribes, and until cancelled feeds every message and a tick every ``tick_s``
to ``rules.handling.RulesService`` (engine, database, events), relays the lifecycle events
from the database outbox to facility/v1/{site}/alarms (``rules.relay``), runs dispatch
(rosters, SLA timers, notifications, maintenance) unless told not to, and serves metrics if
asked.

Messages are received with ``facility.mqtt_session`` (a persistent session,
``rules-{site}``; a process that takes a part of the site's gateways, ``rules.partition``,
names its session after them and keeps to their devices) and acknowledged only after they
were handled, so a message the broker handed over before a crash is redelivered to the
restarted service (a message that cannot be handled is dead-lettered with its reason, then
acknowledged); alarm events are published with ``facility.mqtt`` (paho) by the relay."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from facility.broker_link import BrokerLink
from facility.db import migrate
from facility.db.active_lock import ActiveLock, LockTiming
from facility.db.connect import connect, connect_sync
from facility.db.registry import load_ids, sync_site
from facility.messages import AlarmEvent
from facility.metrics_http import MetricsServer
from facility.mqtt import MqttClient
from facility.mqtt_endpoint import MqttEndpoint
from facility.mqtt_session import Delivery, MqttSession
from facility.procedures import Procedure, load_procedures, upsert_procedures
from facility.site import Site
from facility.stopping import Stopping, wind_down
from rules.definitions import site_rules
from rules.dispatch.config import Dispatch
from rules.dispatch.service import Dispatcher, load_for_site
from rules.engine import Engine
from rules.handling import RulesService
from rules.liveness import Heartbeat, Liveness
from rules.metrics import RulesCounters, collect
from rules.partition import Partition, partition_of
from rules.relay import OutboxRelay
from rules.state_store import load_state

__all__ = ["run_rules"]
log = logging.getLogger(__name__)
HOUSEKEEPING_S = 2.0
YIELD_S = 0.005  # the consumer lets the event loop run other work at least this often
TAKE = 1_000  # deliveries taken (and acknowledged) at a time
RECONNECT_MAX_S = 2.0  # back within this of the broker: live alarms wait no longer
CONSUME_STOP_S = 3.0  # for the message in hand at a stop, before it is cancelled


def _sync_registry(database_url: str, site: Site) -> dict[str, int]:
    with connect_sync(database_url) as conn:
        sync_site(conn, site)
        return load_ids(conn, site.id).devices


async def run_rules(
    site: Site, database_url: str, mqtt_url: str | MqttEndpoint, *, procedures_dir: Path,
    mqtt_protocol: str = "5", gateways: Collection[str] | None = None,
    ready: asyncio.Event | None = None, tick_s: float = 0.5,
    dispatch_path: Path | None = None, dispatch: bool = True,
    on_service: Callable[[RulesService], None] | None = None, client_id: str | None = None,
    metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
    metrics_started: Callable[[int], None] | None = None, stopping: Stopping | None = None,
    standby: LockTiming | None = None, on_lock: Callable[[ActiveLock], None] | None = None,
) -> None:
    """Run the rules service for one site (or the part of it behind ``gateways``) until
    cancelled. ``dispatch=False`` leaves rosters, SLA timers, notifications and maintenance
    to another rules process of the site (exactly one should run them). ``on_service`` is
    handed the service once built, e.g. for a benchmark to read its counters; ``client_id``
    overrides the receiving session's name. With ``metrics_port`` (0: any free port, handed
    to ``metrics_started``) Prometheus text is served on http://metrics_host:port/metrics.
    At ``stopping`` (or cancellation) the message in hand is finished and acknowledged
    (within ``CONSUME_STOP_S``), then the session, tick and dispatch end. With ``standby``
    (high availability) the process runs only while it holds the lock of its session
    (``facility.db.active_lock``; handed to ``on_lock``) and stands by otherwise."""
    stopping = stopping if stopping is not None else Stopping()
    part = partition_of(site, gateways)  # ConfigError at start-up
    await asyncio.to_thread(migrate.check, database_url)
    procedures = load_procedures(procedures_dir)
    plan = load_for_site(site, procedures, dispatch_path) if dispatch else None
    prepared = _Prepared(
        site, mqtt_url, part, procedures, plan,
        Engine.for_site(site_rules(site, procedures), site),
        await asyncio.to_thread(_sync_registry, database_url, site), mqtt_protocol,
        client_id or part.client_id(), ready, tick_s, on_service, metrics_port, metrics_host,
        metrics_started)
    if standby is None:
        await _serve(prepared, stopping, database_url)
        return
    # the work above is done once; a term (each time this process becomes active) loads
    # the rule state and resumes the session
    broker = BrokerLink(mqtt_url, standby.broker_grace_s)
    lock = ActiveLock(database_url, prepared.client_id, standby, broker)
    if on_lock is not None:
        on_lock(lock)
    await lock.run(functools.partial(_serve, prepared, broker=broker), stopping)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a rules process loads once, before it serves (or stands by)."""

    site: Site
    mqtt_url: str | MqttEndpoint
    part: Partition
    procedures: dict[str, Procedure]
    plan: Dispatch | None
    engine: Engine
    device_ids: dict[str, int]
    mqtt_protocol: str
    client_id: str
    ready: asyncio.Event | None
    tick_s: float
    on_service: Callable[[RulesService], None] | None
    metrics_port: int | None
    metrics_host: str
    metrics_started: Callable[[int], None] | None


async def _serve(p: _Prepared, stopping: Stopping, database_url: str, *,
                 broker: BrokerLink | None = None) -> None:
    """Load the rule state, subscribe and serve until ``stopping``; ``broker`` (active /
    standby) follows the receiving session."""
    site, mqtt_url, part = p.site, p.mqtt_url, p.part
    procedures, plan, engine, device_ids = p.procedures, p.plan, p.engine, p.device_ids
    mqtt_protocol, client_id, ready, tick_s = p.mqtt_protocol, p.client_id, p.ready, p.tick_s
    on_service, metrics_port, metrics_host = p.on_service, p.metrics_port, p.metrics_host
    metrics_started = p.metrics_started
    async with await connect(database_url, application_name="rules") as conn:
        await upsert_procedures(conn, procedures)
        state = await load_state(conn, part.sources, [r.id for r in engine.rules])
        log.info("rules for site %s, %s: %d rules, %d procedures, %d saved rule states, "
                 "dispatch %s", site.id, part.describe(), len(engine.rules), len(procedures),
                 len(state.rules), "on" if plan is not None else "off")
        session = MqttSession(
            mqtt_url, client_id, part.subscriptions(),
            protocol=mqtt_protocol, receive_maximum=TAKE * 5, max_pending=TAKE * 20,
            backoff_max_s=RECONNECT_MAX_S)
        if broker is not None:  # the active lock hands over if this stays down too long
            broker.follow(session)
        publisher_id = f"rules-{site.id}-pub-{uuid.uuid4().hex[:8]}"
        async with MqttClient(mqtt_url, publisher_id, protocol=mqtt_protocol,
                              reconnect_max_s=int(RECONNECT_MAX_S)) as client:
            events: Counter[str] = Counter()
            relay = OutboxRelay(database_url, site.id, client, published=events)

            def send(_ev: AlarmEvent) -> None:  # committed to the outbox: the relay sends it
                relay.wake()

            dispatcher = None if plan is None else Dispatcher(
                site, plan, procedures, database_url, publish=send)

            def publish(ev: AlarmEvent) -> None:  # after commit
                relay.wake()
                if dispatcher is not None:
                    dispatcher.committed(ev)  # dispatch hook: assign new orders at once

            svc = RulesService(site, engine, procedures, state, conn, device_ids, publish,
                               None if part.whole_site else part.sources, database_url)
            svc.liveness = Liveness(heartbeats(site, part.gateways),
                                    asyncio.get_running_loop().time())
            if on_service is not None:
                on_service(svc)
            # however long it takes: the client logs why it is refused and retries (until
            # the stop signal: a term handing over for want of a broker ends here)
            if await stopping.until(client.connected):
                return
            metrics = None
            if metrics_port is not None:
                labels = {"site": site.id, "client_id": session.client_id}
                metrics = MetricsServer(lambda: collect(RulesCounters(
                    messages=svc.messages, stale=svc.stale, dead_letters=svc.dead_letters,
                    events=events, database_up=svc.database_up, pending=session.pending,
                    rule_states=len(svc.state.rules)), labels), metrics_port, metrics_host)
                await metrics.start()
                if metrics_started is not None:
                    metrics_started(metrics.port)
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(stopping.watch_cancel(), name=f"rules[{site.id}].stop")
                    consume = tg.create_task(_consume(session, svc, stopping),
                                             name=f"rules[{site.id}].consume")
                    others = [
                        tg.create_task(session.run(), name=f"rules[{site.id}].mqtt"),
                        tg.create_task(_signal_ready(session, ready),
                                       name=f"rules[{site.id}].ready"),
                        tg.create_task(_ticks(svc, session, tick_s),
                                       name=f"rules[{site.id}].tick"),
                        tg.create_task(relay.run(), name=f"rules[{site.id}].relay")]
                    if dispatcher is not None:
                        others.append(tg.create_task(dispatcher.run(),
                                                     name=f"rules[{site.id}].dispatch"))
                    tg.create_task(wind_down(stopping, [consume], others,
                                             grace_s=CONSUME_STOP_S, between=session.close),
                                   name=f"rules[{site.id}].wind-down")
            finally:
                await session.close()
                if metrics is not None:
                    await metrics.close()
                log.info("rules for site %s stopped: %d messages handled (%d stale, %d dead "
                         "letters)", site.id, svc.messages, svc.stale, svc.dead_letters)


def heartbeats(site: Site, gateways: Collection[str]) -> dict[str, Heartbeat]:
    """Each watched gateway's heartbeat period and allowed misses, from the site file."""
    return {g.id: Heartbeat(g.heartbeat_s, g.offline_after_heartbeats)
            for g in site.config.gateways if g.id in gateways}


async def _signal_ready(session: MqttSession, ready: asyncio.Event | None) -> None:
    await session.subscribed.wait()
    log.info("rules subscribed to %s as %s", session.url, session.client_id)
    if ready is not None:
        ready.set()


async def _consume(session: MqttSession, svc: RulesService, stopping: Stopping) -> None:
    # A message that changes no rule state never suspends ``handle``: without a yield, a
    # backlog is worked off in one go while the tick, dispatch and the MQTT client's
    # hand-overs (PUBACKs) wait (measured: the event loop blocked up to 0.5 s at 80k
    # points/s). Yield at least every YIELD_S. Deliveries are acknowledged once handled.
    # At the stop signal the message in hand is finished and acknowledged, the rest of
    # the batch is left unacknowledged (redelivered to the next session).
    loop = asyncio.get_running_loop()
    while not await stopping.until(session.arrived):
        batch = session.take(TAKE)
        yield_at = loop.time() + YIELD_S
        done = 0
        try:
            for delivery in batch:
                if stopping.is_set():
                    break
                await _handle(svc, delivery)
                done += 1
                if loop.time() >= yield_at:
                    await asyncio.sleep(0)
                    yield_at = loop.time() + YIELD_S
        finally:  # a message not handled (cancelled) is redelivered to the next session
            session.ack(batch[:done])


async def _handle(svc: RulesService, delivery: Delivery) -> None:
    topic = delivery.topic.decode(errors="replace")  # not UTF-8: refused by the topic check
    # handled or dead-lettered; never raises
    await svc.handle(topic, delivery.payload, retain=delivery.retain)


async def _ticks(svc: RulesService, session: MqttSession, tick_s: float) -> None:
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    housekeeping_at = next_at
    connections = 0
    while True:
        next_at += tick_s
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        if loop.time() - next_at > tick_s:
            next_at = loop.time()  # fell behind: skip the missed ticks, never queue them
        try:
            await svc.tick()
            if svc.liveness is not None:
                if session.connections != connections:  # (re)subscribed: a fresh window
                    connections = session.connections
                    svc.liveness.listening(loop.time())
                await svc.judge_silence(caught_up=session.subscribed.is_set()
                                        and session.pending == 0)
            if loop.time() >= housekeeping_at:
                housekeeping_at = loop.time() + HOUSEKEEPING_S
                await svc.housekeeping()
        except Exception:
            log.exception("rule tick failed")
