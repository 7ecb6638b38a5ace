"""The ingest service: checks the database schema, registers the site's devices and points,
then consumes the site's MQTT messages into PostgreSQL until cancelled, logging its counters
every minute when they changed. ``ready`` is set once the broker has acknowledged the
subscriptions (a message published from then on is stored)."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from facility.db import migrate, registry
from facility.mqtt import MqttClient
from facility.site import Site
from ingest.batch_writer import BatchWriter
from ingest.consumer import Consumer, client_id_for, subscribe_all
from ingest.counters import Counters
from ingest.rows import Catalog

log = logging.getLogger(__name__)
COUNTERS_INTERVAL_S = 60.0


async def run_ingest(
    site: Site, database_url: str, mqtt_url: str, *,
    mqtt_protocol: str = "5", share_group: str = "", batch_rows: int = 5000,
    batch_ms: int = 200, ready: asyncio.Event | None = None,
    client_id: str | None = None, counters: Counters | None = None,
) -> None:
    """Run ingest for ``site`` until cancelled; flushes the open batch and closes on the way
    out. ``counters`` may be passed in to be read from outside (tests, a metrics endpoint)."""
    if share_group and mqtt_protocol != "5":
        raise ValueError("a shared subscription (share_group) needs MQTT 5")
    if batch_rows < 1 or batch_ms < 1:
        raise ValueError("batch_rows and batch_ms must be positive")
    catalog = await asyncio.to_thread(_prepare_database, database_url, site)
    log.info("ingest for site %s: %d devices, %d points registered", site.id,
             len(catalog.device_ids), len(catalog.point_ids))
    counters = counters if counters is not None else Counters()
    writer = BatchWriter(database_url, application_name=f"ingest-{site.id}")
    client = MqttClient(
        mqtt_url, client_id or client_id_for(site.id, share_group), persistent=True,
        manual_ack=True, protocol=mqtt_protocol,
    )
    await subscribe_all(client, site.id, share_group)
    consumer = Consumer(client, writer, catalog, counters, batch_rows=batch_rows,
                        batch_ms=batch_ms)
    try:
        async with client:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_signal_ready(client, ready), name="ingest-ready")
                tg.create_task(_log_counters(counters), name="ingest-counters")
                tg.create_task(consumer.run(), name=f"ingest-consume[{site.id}]")
    finally:
        await writer.close()
        log.info("ingest stopped: %s", counters.summary())


def _prepare_database(database_url: str, site: Site) -> Catalog:
    """Refuse a schema that is behind, upsert the site registry, load the name -> id maps."""
    migrate.check(database_url)
    with psycopg.connect(database_url) as conn:
        registry.sync_site(conn, site)
        ids = registry.load_ids(conn, site.id)
    return Catalog.build(site, ids)


async def _signal_ready(client: MqttClient, ready: asyncio.Event | None) -> None:
    await client.wait_subscribed()
    log.info("ingest subscribed to %s", client.url)
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
