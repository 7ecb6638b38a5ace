"""The ingest service: checks the database schema, registers the site's devices and points,
chooses the storage layout, then consumes the site's MQTT messages into PostgreSQL until
cancelled, with the partition and rollup jobs (plain layout), an optional Prometheus
endpoint, and its counters logged every minute when they changed. ``ready`` is set once
the broker has acknowledged the subscriptions (a message published from then on is
stored)."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field

from facility.broker_link import BrokerLink
from facility.db import migrate, registry
from facility.db.active_lock import ActiveLock, LockTiming
from facility.db.connect import connect_sync
from facility.mqtt_endpoint import MqttEndpoint
from facility.mqtt_session import Delivery, MqttSession
from facility.site import Site
from facility.stopping import Stopping, wind_down
from ingest.batch import Assembler, Batch
from ingest.batch_writer import BatchWriter
from ingest.consumer import SHUTDOWN_FLUSH_S, Consumer, subscriptions
from ingest.counters import Counters
from ingest.metrics import collect, serve_metrics
from ingest.rows import Catalog
from ingest.sequences import SequenceTracker
from ingest.storage import Layout, Maintenance, StorageSettings, prepare_layout

log = logging.getLogger(__name__)
COUNTERS_INTERVAL_S = 60.0


def client_id_for(site_id: str, share_group: str = "", instance: str = "") -> str:
    """``ingest-{site}``; each instance of a share group needs its own persistent session,
    so it adds the group and an instance name (the host name by default)."""
    if not share_group:
        return f"ingest-{site_id}"
    import socket

    return f"ingest-{site_id}-{share_group}-{instance or socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class IngestOptions:
    mqtt_protocol: str = "5"
    share_group: str = ""
    instance: str = ""  # distinguishes processes of one share group on one host
    batch_rows: int = 10_000
    batch_ms: int = 200
    receive_maximum: int = 20_000
    seq_check: bool = True
    seq_grace_s: float = 30.0  # a missing seq counts as a gap after this long
    metrics_port: int | None = None  # None: no endpoint; 0: an ephemeral port
    metrics_host: str = "127.0.0.1"
    storage: StorageSettings = field(default_factory=StorageSettings)
    standby: LockTiming | None = None  # high availability: active only with the lock

    def __post_init__(self) -> None:
        if self.share_group and self.mqtt_protocol != "5":
            raise ValueError("a shared subscription (share_group) needs MQTT 5")
        if self.batch_rows < 1 or self.batch_ms < 1:
            raise ValueError("batch_rows and batch_ms must be positive")
        if not 1 <= self.receive_maximum <= 65535:
            raise ValueError("receive_maximum must be within 1..65535")


async def run_ingest(
    site: Site, database_url: str, mqtt_url: str | MqttEndpoint, *,
    mqtt_protocol: str = "5", share_group: str = "", batch_rows: int = 10_000,
    batch_ms: int = 200, ready: asyncio.Event | None = None,
    client_id: str | None = None, counters: Counters | None = None,
    options: IngestOptions | None = None, metrics_started: asyncio.Event | None = None,
    stopping: Stopping | None = None,
) -> None:
    """Run ingest for ``site`` until ``stopping`` is set or cancelled; flushes the batches
    in hand (within ``SHUTDOWN_FLUSH_S``), acknowledges what was committed and closes on
    the way out. ``counters`` may be passed in to be read from outside (tests, benches).
    ``options`` overrides the keyword settings it also holds. With ``options.standby``
    the process consumes only while it holds the lock of its session
    (``facility.db.active_lock``) and stands by otherwise."""
    opts = options or IngestOptions(mqtt_protocol=mqtt_protocol, share_group=share_group,
                                    batch_rows=batch_rows, batch_ms=batch_ms)
    catalog, layout = await asyncio.to_thread(_prepare_database, database_url, site,
                                              opts.storage)
    broker = None if opts.standby is None else BrokerLink(mqtt_url, opts.standby.broker_grace_s)
    serve = functools.partial(_serve, site, mqtt_url, catalog, layout, opts, ready=ready,
                              client_id=client_id, counters=counters,
                              metrics_started=metrics_started, broker=broker)
    stopping = stopping if stopping is not None else Stopping()
    if opts.standby is None:
        await serve(stopping, database_url)
        return
    # the registry and the layout are prepared once; each term (each time this process
    # becomes active) resumes the session
    name = client_id or client_id_for(site.id, opts.share_group, opts.instance)
    await ActiveLock(database_url, name, opts.standby, broker).run(serve, stopping)


async def _serve(
    site: Site, mqtt_url: str | MqttEndpoint, catalog: Catalog, layout: Layout,
    opts: IngestOptions, stopping: Stopping, database_url: str, *,
    ready: asyncio.Event | None,
    client_id: str | None, counters: Counters | None,
    metrics_started: asyncio.Event | None, broker: BrokerLink | None,
) -> None:
    log.info("ingest for site %s: %d devices, %d points registered", site.id,
             len(catalog.device_ids), len(catalog.point_ids))
    counters = counters if counters is not None else Counters()
    assembler = Assembler(
        catalog, SequenceTracker(grace_s=opts.seq_grace_s) if opts.seq_check else None)

    def single(delivery: Delivery) -> Batch:
        one = Batch(deliveries=[delivery])
        one.add_decoded(assembler.decode(delivery), delivery.retain)
        return one

    writer = BatchWriter(database_url, site.id, single,
                         partitions=layout is Layout.PARTITIONS,
                         application_name=f"ingest-{site.id}", counters=counters)
    session = MqttSession(
        mqtt_url, client_id or client_id_for(site.id, opts.share_group, opts.instance),
        subscriptions(site.id, opts.share_group), protocol=opts.mqtt_protocol,
        receive_maximum=opts.receive_maximum)
    if broker is not None:  # the active lock hands over if this stays down too long
        broker.follow(session)
    consumer = Consumer(session, writer, assembler, counters, batch_rows=opts.batch_rows,
                        batch_ms=opts.batch_ms)
    labels = {"site": site.id, "client_id": session.client_id}
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(stopping.watch_cancel(), name="ingest-stop")
            others = [
                tg.create_task(session.run(), name="ingest-mqtt"),
                tg.create_task(_signal_ready(session, ready), name="ingest-ready"),
                tg.create_task(_log_counters(counters), name="ingest-counters")]
            if layout is Layout.PARTITIONS:
                others.append(tg.create_task(Maintenance(database_url, opts.storage).run(),
                                             name="ingest-maintenance"))
            if opts.metrics_port is not None:
                others.append(tg.create_task(serve_metrics(
                    opts.metrics_host, opts.metrics_port, lambda: collect(counters, labels),
                    metrics_started), name="ingest-metrics"))
            consume = tg.create_task(consumer.run(), name=f"ingest-consume[{site.id}]")
            # the consumer's cancellation is its flush; the session stays up meanwhile so
            # that the batches it commits are acknowledged, then says goodbye (DISCONNECT)
            tg.create_task(wind_down(stopping, [consume], others, cancel_first=True,
                                     grace_s=SHUTDOWN_FLUSH_S + 1.0, between=session.close),
                           name="ingest-wind-down")
    finally:
        await session.close()
        await writer.close()
        log.info("ingest stopped: %s", counters.summary())


def _prepare_database(database_url: str, site: Site,
                      storage: StorageSettings) -> tuple[Catalog, Layout]:
    """Refuse a schema that is behind, upsert the site registry, choose the layout, load
    the name -> id maps."""
    migrate.check(database_url)
    with connect_sync(database_url) as conn:
        registry.sync_site(conn, site)
        ids = registry.load_ids(conn, site.id)
        layout = prepare_layout(conn, storage)
    return Catalog.build(site, ids, max_age=storage.retention), layout


async def _signal_ready(session: MqttSession, ready: asyncio.Event | None) -> None:
    await session.subscribed.wait()
    log.info("ingest subscribed to %s", session.url)
    if ready is not None:
        ready.set()


async def _log_counters(counters: Counters) -> None:
    last = counters.snapshot()
    while True:
        await asyncio.sleep(COUNTERS_INTERVAL_S)
        now = counters.snapshot()
        if now != last:
            log.info("ingest: %s", counters.summary())
            last = now
