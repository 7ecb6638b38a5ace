"""Charts through the API against a real PostgreSQL (plain layout): raw rows for short spans,
buckets from the raw rows and the rollups, and the fresh tail: on a day or month chart a value
written seconds ago, and a late row in a minute already rolled up, are in the chart before
the rollup job has run again. Rows are written as ingest writes them (the row, and its
minute marked in telemetry_rollup_dirty); the rollup job is run by hand or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_site

URL = "/api/v1/devices/a-elevator-1/telemetry"
POINT = ("SELECT p.id FROM points p JOIN devices d ON d.id = p.device_id"
         " WHERE d.name = 'a-elevator-1' AND p.name = 'car_floor'")


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        c.headers.update(await login(c, "technician"))
        yield c


def write(database_url: str, rows: list[tuple[datetime, float | None]]) -> None:
    """Store rows of car_floor as ingest does: partition, row, minute marked dirty."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(POINT).fetchone()
        assert row is not None
        for day in sorted({t.date() for t, _ in rows}):
            conn.execute("SELECT telemetry_ensure_partition(%s)", (day,))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO telemetry (time, point_id, value, value_text)"
                            " VALUES (%s, %s, %s, %s)",
                            [(t, row[0], v, None if v is not None else "text") for t, v in rows])
            cur.executemany("INSERT INTO telemetry_rollup_dirty (bucket) VALUES"
                            " (date_trunc('minute', %s::timestamptz)) ON CONFLICT DO NOTHING",
                            [(t,) for t, _ in rows])


def roll_up(database_url: str, before: datetime) -> None:
    """What ingest's rollup job does for the closed dirty minutes before ``before``."""
    minutes = run_sql(database_url, "DELETE FROM telemetry_rollup_dirty WHERE bucket < %s"
                      " RETURNING bucket", (before,))
    for (m,) in minutes:
        run_sql(database_url, "SELECT telemetry_rollup(%s, %s)", (m, m + timedelta(minutes=1)))


async def chart(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    resp = await client.get(URL, params={"point": "car_floor", **params})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_raw_rows_and_buckets_from_raw_rows_and_rollups(
    client: httpx.AsyncClient, database_url: str
) -> None:
    t0 = datetime(2025, 3, 10, 8, tzinfo=UTC)
    write(database_url, [(t0 + timedelta(seconds=10 * g), float(g)) for g in range(60)]
          + [(t0 + timedelta(seconds=5), None)])  # a text row: not charted
    roll_up(database_url, t0 + timedelta(hours=1))
    window = {"start": "2025-03-10T08:00:00Z"}
    raw = await chart(client, **window, end="2025-03-10T08:05:00Z")
    assert raw["bucket_s"] == 0 and [s["avg"] for s in raw["samples"]] == list(range(30))
    assert raw["samples"][1] == {"time": "2025-03-10T08:00:10Z", "avg": 1.0, "min": 1.0,
                                 "max": 1.0, "count": 1, "last": 1.0}
    hour = await chart(client, **window, end="2025-03-10T09:00:00Z")
    assert hour["bucket_s"] == 30 and len(hour["samples"]) == 20
    assert hour["samples"][0] == {"time": "2025-03-10T08:00:00Z", "avg": 1.0, "min": 0.0,
                                  "max": 2.0, "count": 3, "last": 2.0}
    day = await chart(client, **window, end="2025-03-11T08:00:00Z")
    assert day["bucket_s"] == 300  # from the 1-minute rollups
    assert [(s["min"], s["max"], s["count"], s["last"]) for s in day["samples"]] == [
        (0.0, 29.0, 30, 29.0), (30.0, 59.0, 30, 59.0)]
    year = await chart(client, **window, end="2026-03-10T08:00:00Z")
    assert year["bucket_s"] == 7 * 86400  # at most 300 points: weeks, from Monday
    assert [(s["time"], s["count"]) for s in year["samples"]] == [("2025-03-10T00:00:00Z", 60)]
    forced = await chart(client, **window, end="2025-03-10T09:00:00Z", bucket_s=60)
    assert len(forced["samples"]) == 10 and forced["samples"][-1]["last"] == 59.0

    for params, status in [({"end": "2025-03-01T00:00:00Z"}, 400),  # end before start
                           ({"end": "2025-03-11T08:00:00Z", "bucket_s": 7}, 400),
                           ({"end": "2026-03-11T08:00:00Z", "bucket_s": 1}, 400),
                           ({"point": "nope", "end": "2025-03-10T09:00:00Z"}, 404)]:
        resp = await client.get(URL, params={"point": "car_floor", **window, **params})
        assert resp.status_code == status, (params, resp.text)


async def test_a_short_span_with_too_many_rows_is_bucketed(
    client: httpx.AsyncClient, database_url: str
) -> None:
    pid = run_sql(database_url, POINT)[0][0]
    run_sql(database_url, "SELECT telemetry_ensure_partition('2025-03-10')")
    run_sql(database_url, "INSERT INTO telemetry (time, point_id, value) SELECT"
            " '2025-03-10T08:00:00Z'::timestamptz + g * interval '100 ms', %s, g %% 50"
            " FROM generate_series(0, 5999) g", (pid,))  # 10 Hz for 10 minutes
    window = {"start": "2025-03-10T08:00:00Z", "end": "2025-03-10T08:10:00Z"}
    series = await chart(client, **window)
    assert series["bucket_s"] == 5 and len(series["samples"]) == 120
    assert series["samples"][0] == {"time": "2025-03-10T08:00:00Z", "avg": 24.5, "min": 0.0,
                                    "max": 49.0, "count": 50, "last": 49.0}
    refused = await client.get(URL, params={"point": "car_floor", **window, "bucket_s": 0})
    assert refused.status_code == 400 and "choose a bucket" in refused.json()["detail"]


async def test_a_long_range_shows_the_fresh_tail_before_the_rollup_job_runs(
    client: httpx.AsyncClient, database_url: str
) -> None:
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    older = [(minute - timedelta(minutes=m), float(m)) for m in range(180, 5, -1)]
    write(database_url, older)
    roll_up(database_url, minute - timedelta(minutes=5))  # the job ran 5 minutes ago
    recent = [(minute - timedelta(minutes=m, seconds=-30), 1.0) for m in range(5, 0, -1)]
    fresh = (now - timedelta(seconds=3), 999.0)  # written a few seconds ago
    write(database_url, [*recent, fresh])
    total = len(older) + len(recent) + 1

    for range_, bucket_s in (("day", 300), ("month", 3 * 3600)):
        series = await chart(client, range=range_)
        assert series["bucket_s"] == bucket_s
        last = series["samples"][-1]
        assert (last["max"], last["last"]) == (999.0, 999.0), (range_, last)
        # hourly rollups, minute rollups and raw rows meet without a gap or an overlap
        assert sum(s["count"] for s in series["samples"]) == total, range_
        assert max(s["max"] for s in series["samples"][:-1]) <= 180.0

    late = (minute - timedelta(minutes=120, seconds=-20), -50.0)  # a replayed row
    write(database_url, [late])
    for range_ in ("day", "month"):
        series = await chart(client, range=range_)
        assert min(s["min"] for s in series["samples"]) == -50.0, range_
        assert sum(s["count"] for s in series["samples"]) == total + 1, range_
