"""The storage layout on a real PostgreSQL: migration 0005 carries rows over into day
partitions, the maintenance jobs create partitions ahead and drop them past retention, the
rollups equal aggregates of the raw rows (late rows included), and the chart query reads
raw rows, rollups and the fresh tail. TimescaleDB tests run against
FACILITY_TEST_TIMESCALE_URL only."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from facility.db import telemetry_query as tq
from facility.db.migrate import available
from ingest.storage import (
    Layout,
    StorageSettings,
    maintain_partitions,
    prepare_layout,
    refresh_rollups,
)
from stack.embedded.postgres import PostgresServer

NOW = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


def partitions(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid ="
                        " i.inhrelid WHERE i.inhparent = 'telemetry'::regclass ORDER BY 1")
    return [r[0] for r in rows.fetchall()]


def seed_point(conn: psycopg.Connection) -> int:
    conn.execute("INSERT INTO sites (id) VALUES ('s') ON CONFLICT DO NOTHING")
    dev = conn.execute("INSERT INTO devices (name, site_id, building, gateway, type, profile,"
                       " protocol) VALUES (%s, 's', 'a', 'g', 'elevator', 'elevator', 'modbus')"
                       " RETURNING id", (f"d-{uuid.uuid4().hex[:6]}",)).fetchone()
    assert dev is not None
    pid = conn.execute("INSERT INTO points (device_id, name, type) VALUES (%s, 'p', 'float32')"
                       " RETURNING id", (dev[0],)).fetchone()
    assert pid is not None
    return int(pid[0])


def insert(conn: psycopg.Connection, pid: int, rows: list[tuple[datetime, float | None]]) -> None:
    for t, _ in rows:
        conn.execute("SELECT telemetry_ensure_partition(%s)", ((t.astimezone(UTC)).date(),))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (time, point_id, value, value_text) VALUES"
                        " (%s, %s, %s, %s)", [(t, pid, v, None if v is not None else "txt")
                                              for t, v in rows])
        cur.executemany("INSERT INTO telemetry_rollup_dirty VALUES (date_trunc('minute', %s))"
                        " ON CONFLICT DO NOTHING", [(t,) for t, _ in rows])


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("SET timezone = 'UTC'")
        yield c


def test_migration_0005_moves_existing_rows_into_day_partitions(pg_server: PostgresServer) -> None:
    name = f"m_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(pg_server.url(name), autocommit=True) as c:
            for mig, sql in available():
                if mig.startswith("0005"):
                    pid = seed_point(c)
                    c.execute("INSERT INTO telemetry (time, point_id, value) VALUES"
                              " ('2026-01-01 23:59:59+00', %s, 1), ('2026-01-02 00:00:00+00',"
                              " %s, 2)", (pid, pid))
                c.execute(sql.encode())
                if mig.startswith("0005"):
                    break
            assert partitions(c) == ["telemetry_p20260101", "telemetry_p20260102"]
            got = c.execute("SELECT tableoid::regclass::text, value FROM telemetry ORDER BY time")
            assert got.fetchall() == [("telemetry_p20260101", 1.0), ("telemetry_p20260102", 2.0)]
            assert c.execute("SELECT layout FROM storage_layout").fetchone() == ("partitions",)
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_partitions_are_made_ahead_and_dropped_past_retention(conn: psycopg.Connection) -> None:
    pid = seed_point(conn)
    insert(conn, pid, [(NOW - timedelta(days=10), 1.0), (NOW - timedelta(days=2), 2.0)])
    settings = StorageSettings(retention_days=3, partitions_ahead_days=2)
    created, dropped = maintain_partitions(conn, settings, NOW)
    assert created == ["telemetry_p20260309", "telemetry_p20260310", "telemetry_p20260311",
                       "telemetry_p20260312"]
    assert dropped == ["telemetry_p20260228"]
    assert partitions(conn)[0] == "telemetry_p20260308"
    assert conn.execute("SELECT value FROM telemetry").fetchall() == [(2.0,)]
    assert maintain_partitions(conn, settings, NOW) == ([], [])  # idempotent


def test_a_duplicate_row_is_refused_across_the_partitioned_table(conn: psycopg.Connection) -> None:
    pid = seed_point(conn)
    insert(conn, pid, [(T0, 1.0)])
    with pytest.raises(psycopg.errors.UniqueViolation):
        insert(conn, pid, [(T0, 2.0)])


def test_rollups_equal_the_aggregates_of_the_raw_rows(conn: psycopg.Connection) -> None:
    pid = seed_point(conn)
    rows = [(T0 + timedelta(seconds=s), float(s % 17)) for s in range(0, 7200, 7)]
    insert(conn, pid, [*rows, (T0 + timedelta(seconds=30), None)])  # text rows are left out
    assert refresh_rollups(conn, NOW) == 120
    minute = conn.execute("SELECT min, max, avg, count, last, last_time FROM telemetry_1m"
                          " WHERE point_id = %s AND bucket = %s", (pid, T0)).fetchone()
    first = [v for t, v in rows if t < T0 + timedelta(minutes=1)]
    assert minute == (min(first), max(first), pytest.approx(sum(first) / len(first)),
                      len(first), first[-1], T0 + timedelta(seconds=7 * (len(first) - 1)))
    hours = conn.execute("SELECT bucket, count, max FROM telemetry_1h WHERE point_id = %s"
                         " ORDER BY bucket", (pid,)).fetchall()
    assert [(h[0], h[1]) for h in hours] == [
        (T0, sum(1 for t, _ in rows if t < T0 + timedelta(hours=1))),
        (T0 + timedelta(hours=1), sum(1 for t, _ in rows if t >= T0 + timedelta(hours=1)))]
    # a late (historical) row changes its minute and hour once the job has run again
    insert(conn, pid, [(T0 + timedelta(seconds=1), 100.0)])
    assert refresh_rollups(conn, NOW) == 1
    again = conn.execute("SELECT max FROM telemetry_1h WHERE point_id = %s AND bucket = %s",
                         (pid, T0)).fetchone()
    assert again == (100.0,)


def test_a_minute_still_open_is_not_rolled_up_yet(conn: psycopg.Connection) -> None:
    pid = seed_point(conn)
    insert(conn, pid, [(NOW - timedelta(seconds=10), 1.0)])
    assert refresh_rollups(conn, NOW) == 0
    assert refresh_rollups(conn, NOW + timedelta(minutes=1)) == 1


def test_bucket_choice_and_source() -> None:
    assert tq.choose_bucket(T0, T0 + timedelta(minutes=5)) == timedelta(seconds=1)
    assert tq.choose_bucket(T0, T0 + timedelta(hours=6)) == timedelta(minutes=1)
    assert tq.choose_bucket(T0, T0 + timedelta(days=30)) == timedelta(hours=3)
    assert tq.choose_bucket(T0, T0 + timedelta(minutes=10), 300, timedelta(minutes=10)) == tq.RAW
    assert tq.choose_bucket(T0, T0 + timedelta(days=400), 300) == timedelta(days=7)
    assert tq.source_for(timedelta(seconds=30)) == "telemetry"
    assert tq.source_for(timedelta(minutes=5)) == "telemetry_1m"
    assert tq.source_for(timedelta(hours=3)) == "telemetry_1h"
    with pytest.raises(tq.QueryError):
        tq.choose_bucket(T0, T0)


async def test_chart_queries_read_raw_rows_rollups_and_the_fresh_tail(
    conn: psycopg.Connection, database_url: str
) -> None:
    pid = seed_point(conn)
    now = T0 + timedelta(hours=2)
    rows = [(T0 + timedelta(seconds=s), float(s)) for s in range(0, 7200, 10)]
    insert(conn, pid, rows)
    refresh_rollups(conn, now - timedelta(minutes=10))  # the last 10 minutes not rolled up
    async with await psycopg.AsyncConnection.connect(database_url) as a:
        raw = await tq.raw(a, pid, T0, T0 + timedelta(minutes=1))
        assert [s.value for s in raw] == [float(s) for s in range(0, 60, 10)]
        fine = await tq.bucketed(a, pid, T0, T0 + timedelta(minutes=2), max_buckets=12)
        assert (fine.source, fine.bucket) == ("telemetry", timedelta(seconds=10))
        assert len(fine.buckets) == 12
        long = await tq.bucketed(a, pid, T0, now, max_buckets=30, now=now)
        # hourly rollups up to T0+1h, minute rollups to T0+1h50, raw rows: one bucket an hour
        hourly = await tq.bucketed(a, pid, T0, now, bucket=timedelta(hours=1), now=now)
        as_rows = await tq.bucketed(a, pid, T0, T0 + timedelta(minutes=10),
                                    raw_span=timedelta(minutes=10))
    assert (long.source, long.bucket) == ("telemetry_1m", timedelta(minutes=5))
    assert len(long.buckets) == 24
    assert sum(b.count for b in long.buckets) == len(rows)  # rollups and tail, no overlap
    assert long.buckets[-1].last == rows[-1][1]
    assert long.buckets[0].min == 0.0 and long.buckets[0].max == 290.0
    assert hourly.source == "telemetry_1h"
    assert [(b.time, b.count, b.min, b.max, b.last) for b in hourly.buckets] == [
        (T0, 360, 0.0, 3590.0, 3590.0), (T0 + timedelta(hours=1), 360, 3600.0, 7190.0, 7190.0)]
    assert as_rows.bucket == tq.RAW and [b.count for b in as_rows.buckets] == [1] * 60


def test_plain_postgresql_is_detected_and_logged(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.storage")
    assert prepare_layout(conn, StorageSettings()) is Layout.PARTITIONS
    assert any("plain PostgreSQL" in r.getMessage() for r in caplog.records)


TIMESCALE_URL = os.environ.get("FACILITY_TEST_TIMESCALE_URL", "")
needs_timescale = pytest.mark.skipif(
    not TIMESCALE_URL, reason="FACILITY_TEST_TIMESCALE_URL is not set: no TimescaleDB server "
    "(TimescaleDB is in neither Debian's nor PyPI's archives)")


@pytest.fixture
def timescale_url() -> Iterator[str]:
    name = f"ts_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(TIMESCALE_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = TIMESCALE_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        from facility.db.migrate import migrate

        migrate(url)
        yield url
    finally:
        with psycopg.connect(TIMESCALE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@needs_timescale
def test_timescaledb_layout_is_created_and_queried_the_same_way(timescale_url: str) -> None:
    with psycopg.connect(timescale_url, autocommit=True) as c:
        assert prepare_layout(c, StorageSettings(retention_days=30)) is Layout.TIMESCALEDB
        assert prepare_layout(c, StorageSettings()) is Layout.TIMESCALEDB  # stays
        pid = seed_point(c)
        c.execute("INSERT INTO telemetry (time, point_id, value) SELECT t, %s, 1.0 FROM"
                  " generate_series(now() - interval '2 hours', now() - interval '1 hour',"
                  " interval '10 seconds') t", (pid,))
        # Real-time aggregate: the same sum whether the refresh policy has run yet or not
        n = c.execute("SELECT sum(count) FROM telemetry_1m WHERE point_id = %s",
                      (pid,)).fetchone()
        assert n is not None and n[0] == 361
        jobs = c.execute("SELECT proc_name FROM timescaledb_information.jobs").fetchall()
        names = {j[0] for j in jobs}
        assert {"policy_compression", "policy_retention",
                "policy_refresh_continuous_aggregate"} <= names
        # The refresh is the policy's job (no manual refresh: it would meet the policy's
        # first run, "due to a concurrent refresh"); wait for the policy to have run
        stats = _policy_runs(c, "telemetry_1m", deadline_s=120)
        assert stats == (stats[0], 0) and stats[0] >= 1  # succeeded, never failed


def _policy_runs(c: psycopg.Connection, view: str, deadline_s: float) -> tuple[int, int]:
    """(successes, failures) of the refresh policy of ``view`` once it has run at least once
    (it runs first soon after it is added, then every minute)."""
    query = ("SELECT s.total_successes, s.total_failures FROM timescaledb_information.jobs j"
             " JOIN timescaledb_information.job_stats s USING (job_id)"
             " JOIN timescaledb_information.continuous_aggregates a"
             "   ON a.materialization_hypertable_name = j.hypertable_name"
             " WHERE j.proc_name = 'policy_refresh_continuous_aggregate'"
             "   AND a.view_name = %s")
    deadline = time.monotonic() + deadline_s
    while True:
        row = c.execute(query, (view,)).fetchone()
        if row is not None and (row[0] or row[1]):
            return int(row[0]), int(row[1])
        assert time.monotonic() < deadline, f"the refresh policy of {view} never ran"
        time.sleep(0.5)
