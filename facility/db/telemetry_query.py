"""Reading telemetry for charts, the same over both storage layouts (plain PostgreSQL day
partitions with rollup tables, or a TimescaleDB hypertable with continuous aggregates: both
have ``telemetry``, ``telemetry_1m`` and ``telemetry_1h`` with the same columns).

``raw``: the stored rows of one point in [start, end), oldest first, up to a limit.
``bucketed``: min, max, avg, count and last of the numeric values (booleans as 0/1) per
bucket; the bucket size is chosen so that the range holds at most ``max_buckets`` buckets
(1 s up to 7 days, aligned to UTC midnight, weeks starting on Monday), or, for a range of at
most ``raw_span``, each stored numeric row is its own bucket (bucket 0) unless there are too
many. Buckets of a minute or more read the 1-minute rollups, of an hour or more the 1-hour
rollups up to the last whole hour and the 1-minute rollups after it; the minutes the rollups
do not hold yet are aggregated from the raw rows, so a long range costs a few hundred rows
to read and the chart's right edge is current (on plain PostgreSQL, rows from the current
minute or the oldest minute still waiting for the rollup job on; TimescaleDB's real-time
aggregates do this themselves). Rows without a numeric value (text points, unreadable
points) are not in buckets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

RAW = timedelta(0)  # the "bucket" of a series of the stored rows themselves
BUCKETS = tuple(timedelta(seconds=s) for s in (
    1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    7 * 86400))
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: weekly buckets start on Mondays
MAX_RAW_ROWS = 100_000
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)


class QueryError(ValueError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Sample:
    time: datetime
    value: float | None
    value_text: str | None
    quality: int


@dataclass(frozen=True, slots=True)
class Bucket:
    time: datetime  # start of the bucket (the row's own time in a raw series)
    min: float
    max: float
    avg: float
    count: int
    last: float


@dataclass(frozen=True, slots=True)
class Series:
    bucket: timedelta  # RAW: one bucket per stored row
    source: str  # telemetry, telemetry_1m or telemetry_1h
    buckets: list[Bucket]


def choose_bucket(start: datetime, end: datetime, max_buckets: int = 500,
                  raw_span: timedelta = RAW) -> timedelta:
    """RAW for a range of at most ``raw_span``, else the smallest bucket that splits
    [start, end) into at most ``max_buckets`` (the largest bucket past that)."""
    _check_range(start, end)
    if max_buckets < 1:
        raise QueryError("max_buckets must be at least 1")
    span = end - start
    if span <= raw_span:
        return RAW
    for b in BUCKETS:
        if span / b <= max_buckets:
            return b
    return BUCKETS[-1]


def source_for(bucket: timedelta) -> str:
    if bucket >= _HOUR and bucket % _HOUR == timedelta(0):
        return "telemetry_1h"
    if bucket >= _MINUTE and bucket % _MINUTE == timedelta(0):
        return "telemetry_1m"
    return "telemetry"


def align(t: datetime, bucket: timedelta) -> datetime:
    return t - (t - ORIGIN) % bucket


async def raw(conn: psycopg.AsyncConnection[Any], point_id: int, start: datetime,
              end: datetime, *, limit: int = 10_000) -> list[Sample]:
    _check_range(start, end)
    if not 1 <= limit <= MAX_RAW_ROWS:
        raise QueryError(f"limit must be within 1..{MAX_RAW_ROWS}")
    cur = await conn.execute(
        "SELECT time, value, value_text, quality FROM telemetry"
        " WHERE point_id = %s AND time >= %s AND time < %s ORDER BY time LIMIT %s",
        (point_id, start, end, limit))
    return [Sample(*r) for r in await cur.fetchall()]


# Three tiers, merged per bucket: hourly rollups [lo, h), minute rollups [h, m), raw [m, hi).
_TIERED = """
WITH parts AS (
  SELECT date_bin(%(b)s, bucket, %(o)s) AS t, min, max, avg, count, last, last_time
  FROM telemetry_1h WHERE point_id = %(p)s AND bucket >= %(lo)s AND bucket < %(h)s
  UNION ALL
  SELECT date_bin(%(b)s, bucket, %(o)s), min, max, avg, count, last, last_time
  FROM telemetry_1m WHERE point_id = %(p)s AND bucket >= %(h)s AND bucket < %(m)s
  UNION ALL
  SELECT date_bin(%(b)s, time, %(o)s), min(value), max(value), avg(value), count(*),
         (array_agg(value ORDER BY time DESC))[1], max(time)
  FROM telemetry WHERE point_id = %(p)s AND time >= %(m)s AND time < %(hi)s
    AND value IS NOT NULL GROUP BY 1
)
SELECT t, min(min), max(max), sum(avg * count) / sum(count), sum(count),
       (array_agg(last ORDER BY last_time DESC))[1]
FROM parts GROUP BY t ORDER BY t
"""


async def bucketed(
    conn: psycopg.AsyncConnection[Any], point_id: int, start: datetime, end: datetime, *,
    max_buckets: int = 500, bucket: timedelta | None = None, raw_span: timedelta = RAW,
    now: datetime | None = None,
) -> Series:
    """Buckets of [align(start), end), oldest first; ``bucket`` overrides the choice (RAW:
    the stored numeric rows, refused when there are more than ``10 * max_buckets``)."""
    b = bucket if bucket is not None else choose_bucket(start, end, max_buckets, raw_span)
    _check_range(start, end)
    cap = 10 * max(max_buckets, 500)
    if b == RAW:
        rows = await _numeric_rows(conn, point_id, start, end, cap + 1)
        if len(rows) <= cap:
            return Series(RAW, "telemetry", rows)
        if bucket is not None:
            raise QueryError(f"more than {cap} values in the range: choose a bucket")
        b = choose_bucket(start, end, max_buckets)
    if b < RAW or (end - start) / b > cap:
        raise QueryError(f"bucket {b} is too small for the range")
    source = source_for(b)
    try:
        lo = align(start, b)
    except OverflowError:
        raise QueryError("start is too early for the bucket") from None
    m = h = lo
    if source != "telemetry":
        current = now if now is not None else datetime.now(UTC)
        m = max(lo, min(align(end, _MINUTE), await _rolled_up_until(conn, current)))
        h = max(lo, align(m, _HOUR)) if source == "telemetry_1h" else lo
    cur = await conn.execute(_TIERED, {"b": b, "o": ORIGIN, "p": point_id, "lo": lo, "h": h,
                                       "m": m, "hi": end})
    return Series(b, source, [Bucket(r[0], float(r[1]), float(r[2]), float(r[3]), int(r[4]),
                                     float(r[5])) for r in await cur.fetchall()])


async def _numeric_rows(conn: psycopg.AsyncConnection[Any], point_id: int, start: datetime,
                        end: datetime, limit: int) -> list[Bucket]:
    cur = await conn.execute(
        "SELECT time, value FROM telemetry WHERE point_id = %s AND time >= %s AND time < %s"
        " AND value IS NOT NULL ORDER BY time LIMIT %s", (point_id, start, end, limit))
    return [Bucket(t, v, v, v, 1, v) for t, v in await cur.fetchall()]


async def _rolled_up_until(conn: psycopg.AsyncConnection[Any], now: datetime) -> datetime:
    """Where the rollups stop being complete (a minute): with TimescaleDB's real-time
    aggregates, never; on plain PostgreSQL, at the current minute or the oldest minute still
    marked for the rollup job."""
    cur = await conn.execute(
        "SELECT (SELECT layout FROM storage_layout), (SELECT min(bucket) FROM"
        " telemetry_rollup_dirty WHERE (SELECT layout FROM storage_layout) = 'partitions')")
    row = await cur.fetchone()
    if row is not None and row[0] == "timescaledb":
        return datetime.max.replace(tzinfo=UTC)
    until = align(now, _MINUTE)
    if row is not None and row[1] is not None:
        until = min(until, row[1])
    return until


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise QueryError("start and end must be timezone-aware")
    if end <= start:
        raise QueryError("end must be after start")
