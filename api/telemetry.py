"""Telemetry ranges for charts. ``choose_bucket`` (pure) picks a bucket size from the span so a
chart gets at most ``MAX_POINTS`` points: raw rows for short spans, then buckets from a fixed
ladder. ``read_range`` serves buckets under a minute from the raw table (date_bin) and longer
ones from the rollups (telemetry_1m below an hour, telemetry_1h from an hour), as the storage
layout keeps them (migration 0005: same names under TimescaleDB's continuous aggregates).
Text values are not charted: buckets cover numeric values only (booleans as 0/1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

MAX_POINTS = 300
RAW_SPAN = timedelta(minutes=10)
LADDER_S = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)


@dataclass(frozen=True, slots=True)
class Bucket:
    time: datetime
    avg: float | None
    min: float | None
    max: float | None
    count: int


def choose_bucket(start: datetime, end: datetime) -> int:
    """Bucket size in seconds for the span (0 = raw rows)."""
    span_s = (end - start).total_seconds()
    if span_s <= RAW_SPAN.total_seconds():
        return 0
    for size in LADDER_S:
        if span_s / size <= MAX_POINTS:
            return size
    return LADDER_S[-1]


_RAW = """
SELECT time, value, value, value, 1 FROM telemetry
WHERE point_id = %(point)s AND time >= %(start)s AND time < %(end)s AND value IS NOT NULL
ORDER BY time LIMIT %(limit)s
"""
_BINNED = """
SELECT date_bin(%(bucket)s, time, %(origin)s) AS b, avg(value), min(value), max(value),
       count(*)
FROM telemetry
WHERE point_id = %(point)s AND time >= %(start)s AND time < %(end)s AND value IS NOT NULL
GROUP BY b ORDER BY b LIMIT %(limit)s
"""
_ROLLUP = """
SELECT date_bin(%(bucket)s, bucket, %(origin)s) AS b, sum(avg * count) / sum(count),
       min(min), max(max), sum(count)::int
FROM {table}
WHERE point_id = %(point)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY b ORDER BY b LIMIT %(limit)s
"""
ORIGIN = "2000-01-01T00:00:00Z"


def _query(bucket_s: int) -> str:
    if bucket_s == 0:
        return _RAW
    if bucket_s < 60:
        return _BINNED
    return _ROLLUP.format(table="telemetry_1h" if bucket_s >= 3600 else "telemetry_1m")


async def read_range(
    conn: psycopg.AsyncConnection[Any], point_id: int, start: datetime, end: datetime,
    bucket_s: int,
) -> list[Bucket]:
    """Buckets of ``bucket_s`` seconds (0: raw rows) in [start, end), oldest first."""
    params = {"point": point_id, "start": start, "end": end, "origin": ORIGIN,
              "bucket": timedelta(seconds=bucket_s), "limit": 20 * MAX_POINTS}
    cur = await conn.execute(_query(bucket_s), params)
    return [Bucket(time=r[0], avg=r[1], min=r[2], max=r[3], count=int(r[4]))
            for r in await cur.fetchall()]
