"""Ingest under faults, with real processes, a real broker and a real PostgreSQL: killed with
SIGKILL mid-stream and restarted, PostgreSQL stopped and restarted under load, two
processes sharing the subscription; every published point is stored exactly once. Also
the Prometheus endpoint, sequence-gap counting and a fuzz test over MQTT."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facility.db import registry
from facility.db.migrate import migrate
from facility.ports import free_port
from ingest.rows import Catalog, decode
from ingest.service import IngestOptions
from stack.embedded.broker import Broker
from stack.embedded.postgres import PostgresServer
from tests.integration.gateway_support import until
from tests.integration.ingest_process import POINTS, IngestProcess, publish_numbered
from tests.integration.ingest_support import (
    at,
    eventually,
    publisher,
    query,
    rows,
    running_ingest,
    telemetry,
    topic,
    ts,
    write_site,
)

COUNT = "SELECT count(*) FROM telemetry"
# Per point: rows, first and last time. The key (point_id, time) rules out a row stored twice;
# n rows from ts 0.1 s to n/10 s, 0.1 s apart, mean every message k = 1..n is stored.
COVERAGE = ("SELECT p.name, count(*), min(t.time), max(t.time) FROM telemetry t"
            " JOIN points p ON p.id = t.point_id GROUP BY p.name ORDER BY p.name")
FLOORS = ("SELECT count(*) FROM telemetry t JOIN points p ON p.id = t.point_id"
          " WHERE p.name = 'car_floor'")


async def stored(database_url: str, n_messages: int, timeout_s: float = 60.0) -> list[Any]:
    """Once every row has arrived: the coverage of each point (see COVERAGE)."""
    expected = n_messages * len(POINTS)
    await eventually(database_url, rows(COUNT), lambda r: r[0][0] >= expected,
                     timeout_s=timeout_s)
    return await query(database_url, rows(COVERAGE))


def every_message(n: int) -> list[tuple[str, int, datetime, datetime]]:
    return [(name, n, at(0.1), at(n / 10)) for name in sorted(POINTS)]


async def _scraped_all(procs: list[IngestProcess],
                       until: Callable[[list[dict[str, float]]], bool],
                       timeout_s: float = 30.0) -> list[dict[str, float]]:
    """The processes' metrics once ``until`` holds on them (their last batches counted)."""
    async with asyncio.timeout(timeout_s):
        while True:
            metrics = [await p.try_scrape() for p in procs]
            if until(metrics):
                return metrics
            await asyncio.sleep(0.05)


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    await until(lambda: any(text in r.getMessage() for r in caplog.records), 30)


async def _scraped(proc: IngestProcess, until: Callable[[dict[str, float]], bool]
                   ) -> dict[str, float]:
    return (await _scraped_all([proc], lambda ms: bool(ms[0]) and until(ms[0])))[0]


@pytest.mark.slow
async def test_ingest_killed_mid_stream_and_restarted_stores_every_point_once(
    tmp_path: Path, broker: Broker, database_url: str, mqtt_url: str, site_id: str
) -> None:
    write_site(tmp_path, site_id)
    n = 4000
    ingest = IngestProcess(tmp_path / "site.yaml", database_url, mqtt_url, tmp_path / "i.log")
    ingest.start()
    try:
        await ingest.wait_ready()
        async with publisher(mqtt_url, "5", f"pub-{site_id}") as pub:
            sending = asyncio.create_task(publish_numbered(pub, site_id, 1, n))
            await eventually(database_url, rows(COUNT), lambda r: r[0][0] >= 1000 * len(POINTS),
                             timeout_s=30)
            ingest.kill()  # mid-stream: batches in hand, messages unacknowledged
            assert not sending.done(), "the stream should still be running"
            await sending  # the broker queues the rest in ingest's persistent session
        ingest.start()
        got = await stored(database_url, n)
        metrics = await _scraped(ingest, lambda m: m["ingest_pending_messages"] == 0)
    finally:
        ingest.stop()
    assert got == every_message(n)
    # What the restarted process did: every row of every message it took was either written
    # or found already stored (written by the killed one before its acknowledgement was lost)
    taken = metrics["ingest_messages_received_total"]
    assert 0 < taken < n
    assert metrics["ingest_rows_written_total"] + metrics["ingest_duplicate_rows_total"] == \
        taken * len(POINTS)
    assert metrics["ingest_dead_letters_total"] == 0


@pytest.mark.slow
async def test_two_processes_on_the_shared_subscription_store_each_point_once(
    tmp_path: Path, broker: Broker, database_url: str, mqtt_url: str, site_id: str
) -> None:
    write_site(tmp_path, site_id)
    n = 3000
    procs = [IngestProcess(tmp_path / "site.yaml", database_url, mqtt_url,
                           tmp_path / f"i{k}.log", instance=f"i{k}",
                           extra=("--share-group", "ingest", "--no-seq-check"))
             for k in (1, 2)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            await p.wait_ready()
        async with publisher(mqtt_url, "5", f"pub-{site_id}") as pub:
            await publish_numbered(pub, site_id, 1, n)
        got = await stored(database_url, n)
        metrics = await _scraped_all(
            procs, lambda ms: sum(m["ingest_messages_received_total"] for m in ms) >= n)
    finally:
        for p in procs:
            p.stop()
    assert got == every_message(n)
    received = [m["ingest_messages_received_total"] for m in metrics]
    assert all(r > 0 for r in received), received  # both took a share
    assert sum(received) == n  # each message went to one of them
    assert sum(m["ingest_rows_written_total"] for m in metrics) == n * len(POINTS)
    assert sum(m["ingest_duplicate_rows_total"] for m in metrics) == 0


@pytest.mark.slow
async def test_postgresql_stopped_and_restarted_under_load_loses_nothing(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = PostgresServer(tmp_path / "pg", free_port(),
                            settings={"fsync": "off", "full_page_writes": "off"})
    server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE faults")
        url = server.url("faults")
        migrate(url)
        site = write_site(tmp_path, site_id)
        n = 3000
        caplog.set_level(logging.INFO, logger="ingest.batch_writer")
        async with (running_ingest(site, url, mqtt_url, mqtt_protocol) as counters,
                    publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
            await publish_numbered(pub, site_id, 1, n // 2, window=50)
            await eventually(url, rows(COUNT), lambda r: r[0][0] > 0, timeout_s=20)
            await asyncio.to_thread(server.stop)
            sending = asyncio.create_task(
                publish_numbered(pub, site_id, n // 2 + 1, n - n // 2, window=50))
            await _logged(caplog, "database unreachable")  # the outage met, retrying
            await asyncio.to_thread(server.start)
            await sending
            got = await stored(url, n)
            await _logged(caplog, "database back after")
            await until(lambda: counters.messages_in >= n, 30)  # counted after the commit
        assert got == every_message(n)
        assert counters.messages_in == n  # no redelivery: the session stayed up
        # each row written once, or found stored when a commit's outcome was lost
        assert counters.rows_written + counters.redeliveries_ignored == n * len(POINTS)
        assert counters.dead_letters == 0
    finally:
        server.stop()


async def test_metrics_endpoint_and_sequence_gaps_and_duplicates(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    port = free_port()
    started = asyncio.Event()
    opts = IngestOptions(mqtt_protocol=mqtt_protocol, batch_ms=30, seq_grace_s=0.0,
                         metrics_port=port)
    proc = IngestProcess(tmp_path / "x", database_url, mqtt_url, tmp_path / "x.log", port=port)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol, options=opts,
                               metrics_started=started) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        for k in (1, 2, 4, 5, 5):  # 3 never comes; 5 twice
            await pub.publish(topic(site_id, "telemetry"),
                              telemetry(k, {"car_floor": k}, seq=k))
        await pub.publish(topic(site_id, "telemetry"), b"{oops")
        await pub.publish(topic(site_id, "telemetry", device="zz"), telemetry(9, {"x": 1}))
        await eventually(database_url, rows(FLOORS), lambda r: r[0][0] == 4)
        await eventually(database_url, rows("SELECT count(*) FROM dead_letters"),
                         lambda r: r[0][0] == 2)
        await pub.publish(topic(site_id, "telemetry"), telemetry(6, {"car_floor": 6}, seq=6))
        await eventually(database_url, rows(FLOORS), lambda r: r[0][0] == 5)
        await asyncio.wait_for(started.wait(), 5)
        m = await asyncio.to_thread(proc.scrape)
    assert (counters.seq_gaps, counters.seq_duplicates) == (1, 1)
    assert m["ingest_sequence_gaps_total"] == 1
    assert m["ingest_sequence_duplicates_total"] == 1
    assert m["ingest_messages_received_total"] == 8
    assert m["ingest_rows_written_total"] == 5
    assert m["ingest_duplicate_rows_total"] == 1
    assert m["ingest_dead_letters_total"] == 2
    assert m["ingest_dead_letters_by_reason_total[payload]"] == 1
    assert m["ingest_dead_letters_by_reason_total[unknown_device]"] == 1
    assert m["ingest_batch_latency_seconds_count"] >= 1


def _payloads() -> st.SearchStrategy[list[bytes]]:
    value = st.one_of(st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                      st.text(max_size=20), st.none())
    body = st.fixed_dictionaries(
        {"ts": st.one_of(st.sampled_from([ts(1), ts(2), ts(86400 * 5), "x"]), st.integers()),
         "seq": st.one_of(st.integers(-1, 10), st.text(max_size=2)),
         "session": st.text(max_size=3),
         "points": st.dictionaries(st.sampled_from(["car_floor", "moving", "warp"]), value,
                                   max_size=3)})
    one = st.one_of(body.map(lambda b: json.dumps(b).encode()), st.binary(max_size=40))
    return st.lists(one, min_size=5, max_size=15)


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=_payloads())
async def test_fuzzed_payloads_over_mqtt_are_stored_or_dead_lettered(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
    payloads: list[bytes],
) -> None:
    site = write_site(tmp_path, site_id)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        await c.execute("TRUNCATE telemetry, latest_values, dead_letters")
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        with psycopg.connect(database_url) as conn:
            cat = Catalog.build(site, registry.load_ids(conn, site_id))
        now = datetime.now(UTC)
        dead = 0
        keys: set[tuple[int, datetime]] = set()
        for p in payloads:
            d = decode(topic(site_id, "telemetry"), p, cat, now)
            dead += d.dead_letter is not None
            keys |= {(r.point_id, r.time) for r in d.telemetry}
            await pub.publish(topic(site_id, "telemetry"), p)
        await pub.publish(topic(site_id, "telemetry"), telemetry(99, {"car_floor": 1}, seq=99))
        await eventually(database_url, rows(FLOORS), lambda r: r[0][0] >= 1)
        got_dead = await eventually(database_url, rows("SELECT count(*) FROM dead_letters"),
                                    lambda r: r[0][0] >= dead)
        stored_rows = await query(database_url, rows("SELECT point_id, time FROM telemetry"))
        assert counters.messages_in == len(payloads) + 1
    assert got_dead == [(dead,)]
    assert {(r[0], r[1]) for r in stored_rows} == keys | {
        (cat.point_ids[("a-elevator-1", "car_floor")], at(99))}
