"""Ingest throughput: telemetry rows per second stored by ingest's BatchWriter, against a
naive writer in the same run, and through the whole MQTT path.

Starts a private PostgreSQL (and, for the MQTT path, mosquitto) on 127.0.0.1 with free
ports, stops them by pid at the end. N telemetry messages of 12 points each (the elevator
profile) are built with the real message schema, spread over ``--devices`` elevators.

1. writer: the messages are decoded up front (ingest.rows.decode), grouped into batches of
   ``--batch-rows`` rows as ingest's consumer does, and written by ``BatchWriter.write``
   (COPY into staging, INSERT ... ON CONFLICT DO NOTHING, latest_values upsert, one commit
   per batch). Then the same batches are written again: nothing may be inserted.
2. naive: the same rows, one ``INSERT ... ON CONFLICT DO NOTHING`` per row with
   ``executemany``, one transaction per message; no latest_values (less work than 1).
3. mqtt: ``run_ingest`` consumes while a publisher sends the N messages (QoS 1); timed from
   the first publish until ingest's counters say every row is committed. Then the same N
   messages are published again: the row count must not change.

Every phase checks ``count(*)`` of telemetry equals 12 N. Prints a table and ends with one
``RESULT`` line. Usage: .venv/bin/python bench/ingest_throughput.py [--messages N]"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import yaml

from facility import messages, topics
from facility.db import registry
from facility.db.migrate import migrate
from facility.embedded.broker import Broker
from facility.embedded.ports import free_port
from facility.embedded.postgres import PostgresServer
from facility.mqtt import MqttClient
from facility.site import Site, load_site
from ingest.batch_writer import BatchWriter, Item
from ingest.counters import Counters
from ingest.rows import Catalog, decode
from ingest.service import run_ingest

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
SITE_ID = "bench"
GATEWAY = "gw-bench"
POINTS_PER_MESSAGE = 12
NAIVE_INSERT = (
    "INSERT INTO telemetry (time, point_id, value, value_text, quality)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (point_id, time) DO NOTHING"
)
PUBLISH_WINDOW = 500  # QoS 1 messages in flight from the publisher at a time
PHASE_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    rows: int
    seconds: float
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# --- servers and databases ---------------------------------------------------------------

@contextlib.contextmanager
def postgres(work: Path, durable: bool) -> Iterator[PostgresServer]:
    settings = {"max_connections": "50"}
    if not durable:
        settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    server = PostgresServer(work / "pgdata", free_port(), settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def mosquitto(work: Path) -> Iterator[Broker]:
    broker = Broker(work / "broker", free_port(), prefer="mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def new_database(server: PostgresServer, name: str) -> str:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    migrate(url)
    return url


def register(url: str, site: Site) -> Catalog:
    with psycopg.connect(url) as conn:
        registry.sync_site(conn, site)
        return Catalog.build(site, registry.load_ids(conn, site.id))


def count_rows(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        telemetry = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        latest = conn.execute("SELECT count(*) FROM latest_values").fetchone()
    assert telemetry is not None and latest is not None
    return int(telemetry[0]), int(latest[0])


# --- workload ----------------------------------------------------------------------------

def write_site(work: Path, devices: int) -> Site:
    data = {
        "site": SITE_ID, "profiles_dir": str(PROFILES), "gateways": [{"id": GATEWAY}],
        "buildings": [{"id": "a", "gateway": GATEWAY, "devices": [
            {"id": f"elevator-{k}", "type": "elevator", "profile": "elevator",
             "address": {"protocol": "modbus", "port": 20000 + k}} for k in range(devices)]}],
    }
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_site(path, profiles_dir=PROFILES)


def build_messages(site: Site, n: int, rounds: int = 1) -> list[list[tuple[str, bytes]]]:
    """``rounds`` sets of ``n`` telemetry messages, round robin over the devices, one second
    apart per device, no two alike in (device, ts), all in the past (none refused as future)."""
    devices = sorted(site.devices)
    per_round = n // len(devices) + 1
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(
        seconds=rounds * per_round + 3600)
    return [[_message(devices, i, r * per_round, base) for i in range(n)] for r in range(rounds)]


def _message(devices: Sequence[str], i: int, offset: int, base: datetime) -> tuple[str, bytes]:
    device = devices[i % len(devices)]
    k = offset + i // len(devices)
    points: dict[str, messages.Value] = {
        "moving": k % 3 != 0, "door_closed": k % 3 != 1, "door_zone": k % 5 == 0,
        "alarm_button": False, "car_floor": k % 20 - 2, "direction": k % 3,
        "passengers": k % 9, "load_kg": 75 * (k % 9), "service_mode": 0,
        "fault_code": 0, "speed_mps": round((k % 7) * 0.25, 2), "run_count": 100_000 + k,
    }
    msg = messages.Telemetry(ts=base + timedelta(seconds=k), seq=k, session="bench",
                             points=points)
    topic = topics.device_topic(topics.TopicKind.TELEMETRY, SITE_ID, GATEWAY, device)
    return topic, messages.encode(msg)


def decode_all(msgs: Sequence[tuple[str, bytes]], catalog: Catalog) -> list[Item]:
    now = datetime.now(UTC)
    items = [Item(t, p, decode(t, p, catalog, now)) for t, p in msgs]
    bad = [i for i in items if i.decoded.dead_letter is not None
           or len(i.decoded.telemetry) != POINTS_PER_MESSAGE]
    if bad:
        raise SystemExit(f"workload is wrong: {bad[0].decoded.dead_letter}")
    return items


def batches_of(items: Sequence[Item], batch_rows: int) -> list[list[Item]]:
    """Group as ingest's consumer does: add messages until the batch holds batch_rows rows."""
    out: list[list[Item]] = []
    current: list[Item] = []
    rows = 0
    for item in items:
        current.append(item)
        rows += item.decoded.rows
        if rows >= batch_rows:
            out.append(current)
            current, rows = [], 0
    if current:
        out.append(current)
    return out


# --- phases ------------------------------------------------------------------------------

async def bench_writer(url: str, batches: Sequence[Sequence[Item]], expected: int) -> list[Phase]:
    writer = BatchWriter(url, application_name="bench-writer")
    try:
        await writer.write([])  # connect and create the staging table
        t0 = time.perf_counter()
        inserted = sum([(await writer.write(b)).telemetry_inserted for b in batches])
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = sum([(await writer.write(b)).telemetry_inserted for b in batches])
        second = time.perf_counter() - t0
    finally:
        await writer.close()
    stored, latest = count_rows(url)
    points = len({r.point_id for b in batches for i in b for r in i.decoded.telemetry})
    if inserted != expected or again != 0 or stored != expected or latest != points:
        raise SystemExit(f"writer stored wrong counts: inserted {inserted}, again {again}, "
                         f"count(*) {stored}, expected {expected}; latest_values {latest} "
                         f"for {points} points")
    return [Phase("writer", expected, first, f"{len(batches)} batches, 1 commit each"),
            Phase("writer, same batches again", expected, second, "0 inserted (checked)")]


async def bench_naive(url: str, items: Sequence[Item]) -> Phase:
    expected = sum(len(i.decoded.telemetry) for i in items)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        t0 = time.perf_counter()
        for item in items:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(NAIVE_INSERT, [
                    (r.time, r.point_id, r.value, r.value_text, r.quality)
                    for r in item.decoded.telemetry])
        seconds = time.perf_counter() - t0
    stored, _ = count_rows(url)
    if stored != expected:
        raise SystemExit(f"naive stored {stored} rows, expected {expected}")
    return Phase("naive (row INSERTs, commit/msg)", expected, seconds,
                 f"{len(items)} messages, 1 commit each")


@contextlib.asynccontextmanager
async def running_ingest(site: Site, url: str, mqtt_url: str,
                         batch_rows: int) -> AsyncIterator[tuple[Counters, asyncio.Task[None]]]:
    counters = Counters()
    ready = asyncio.Event()
    task = asyncio.create_task(run_ingest(site, url, mqtt_url, mqtt_protocol="5",
                                          batch_rows=batch_rows, ready=ready,
                                          counters=counters), name="ingest")
    try:
        async with asyncio.timeout(30):
            waiter = asyncio.ensure_future(ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if task.done():
            task.result()
        yield counters, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish_all(client: MqttClient, msgs: Sequence[tuple[str, bytes]]) -> None:
    window: list[asyncio.Future[None]] = []
    for topic, payload in msgs:
        window.append(client.publish_nowait(topic, payload, qos=1))
        if len(window) >= PUBLISH_WINDOW:
            await asyncio.gather(*window)
            window = []
    await asyncio.gather(*window)


async def wait_for(task: asyncio.Task[None], ok: Callable[[], bool]) -> None:
    while not ok():
        if task.done():
            task.result()
            raise SystemExit("ingest stopped")
        await asyncio.sleep(0.01)


async def bench_mqtt(site: Site, url: str, mqtt_url: str,
                     msgs: Sequence[tuple[str, bytes]], backlog: Sequence[tuple[str, bytes]],
                     batch_rows: int) -> list[Phase]:
    expected = len(msgs) * POINTS_PER_MESSAGE
    async with MqttClient(mqtt_url, "bench-publisher", protocol="5") as pub:
        await pub.wait_connected(10)
        async with running_ingest(site, url, mqtt_url, batch_rows) as (counters, task):
            t0 = time.perf_counter()
            await publish_all(pub, msgs)
            published = time.perf_counter() - t0
            await wait_for(task, lambda: counters.rows_written >= expected)
            live = time.perf_counter() - t0
            batches = counters.batches
            t0 = time.perf_counter()
            await publish_all(pub, msgs)
            await wait_for(task, lambda: counters.redeliveries_ignored >= expected)
            again = time.perf_counter() - t0
        check_mqtt(url, counters, expected, expected)
        # ingest is stopped; its persistent session queues the backlog at the broker
        await publish_all(pub, backlog)
    t0 = time.perf_counter()
    async with running_ingest(site, url, mqtt_url, batch_rows) as (drain, task):
        await wait_for(task, lambda: drain.rows_written >= expected)
        drained = time.perf_counter() - t0
    check_mqtt(url, drain, expected, 2 * expected)
    return [Phase("mqtt: publish -> committed", expected, live,
                  f"publisher in this process took {published:.2f} s; {batches} batches"),
            Phase("mqtt: same messages again", expected, again, "0 inserted (checked)"),
            Phase("mqtt: drain a queued backlog", expected, drained,
                  f"ingest start -> committed; {drain.batches} batches")]


def check_mqtt(url: str, counters: Counters, written: int, stored_total: int) -> None:
    stored, _ = count_rows(url)
    if stored != stored_total or counters.rows_written != written or counters.dead_letters:
        raise SystemExit(f"mqtt path stored wrong counts: count(*) {stored}, "
                         f"{counters.summary()}, expected {written} written, "
                         f"{stored_total} stored")


# --- main --------------------------------------------------------------------------------

def print_table(phases: Sequence[Phase]) -> None:
    print(f"{'phase':<34} {'rows':>9} {'seconds':>8} {'rows/s':>10}  note")
    for p in phases:
        print(f"{p.name:<34} {p.rows:>9} {p.seconds:>8.2f} {p.rows_per_s:>10.0f}  {p.note}")


async def run(args: argparse.Namespace, work: Path) -> None:
    load = os.getloadavg()[0]
    site = write_site(work, args.devices)
    msgs, backlog = build_messages(site, args.messages, rounds=2)
    expected = args.messages * POINTS_PER_MESSAGE
    phases: list[Phase] = []
    with postgres(work, durable=not args.no_fsync) as server:
        url_w = new_database(server, "bench_writer")
        catalog = register(url_w, site)
        t0 = time.perf_counter()
        items = decode_all(msgs, catalog)
        decode_s = time.perf_counter() - t0
        phases.append(Phase("decode (JSON -> rows, no I/O)", expected, decode_s,
                            f"{args.messages / decode_s:.0f} messages/s"))
        phases += await bench_writer(url_w, batches_of(items, args.batch_rows), expected)

        url_n = new_database(server, "bench_naive")
        naive_items = decode_all(msgs[: args.naive_messages], register(url_n, site))
        phases.append(await bench_naive(url_n, naive_items))

        if not args.skip_mqtt:
            url_m = new_database(server, "bench_mqtt")
            with mosquitto(work) as broker:
                phases += await bench_mqtt(site, url_m, broker.url, msgs, backlog,
                                            args.batch_rows)
    print(f"{args.messages} messages x {POINTS_PER_MESSAGE} points from {args.devices} "
          f"devices; batches of {args.batch_rows} rows; PostgreSQL "
          f"{'fsync off' if args.no_fsync else 'durable (fsync, synchronous_commit on)'}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at start")
    print_table(phases)
    by = {p.name: p for p in phases}
    writer = by["writer"].rows_per_s
    naive = by["naive (row INSERTs, commit/msg)"].rows_per_s
    mqtt = by["mqtt: publish -> committed"].rows_per_s if not args.skip_mqtt else 0.0
    drain = by["mqtt: drain a queued backlog"].rows_per_s if not args.skip_mqtt else 0.0
    print(f"RESULT ingest_rows_per_s={writer:.0f} naive_rows_per_s={naive:.0f} "
          f"speedup={writer / naive:.1f} mqtt_path_rows_per_s={mqtt:.0f} "
          f"mqtt_drain_rows_per_s={drain:.0f} "
          f"messages={args.messages} batch_rows={args.batch_rows} "
          f"durable={'no' if args.no_fsync else 'yes'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000, help="telemetry messages (12 rows each)")
    p.add_argument("--batch-rows", type=int, default=5000, help="rows per writer batch")
    p.add_argument("--devices", type=int, default=20, help="elevators the messages come from")
    p.add_argument("--naive-messages", type=int, default=0,
                   help="messages for the naive baseline (default: all of --messages)")
    p.add_argument("--no-fsync", action="store_true",
                   help="run PostgreSQL with fsync and synchronous_commit off (as the tests do)")
    p.add_argument("--skip-mqtt", action="store_true", help="skip the MQTT path")
    args = p.parse_args()
    if args.messages < 1 or args.batch_rows < 1 or args.devices < 1:
        p.error("--messages, --batch-rows and --devices must be positive")
    args.naive_messages = min(args.naive_messages or args.messages, args.messages)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        asyncio.run(asyncio.wait_for(run(args, work), PHASE_TIMEOUT_S))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
