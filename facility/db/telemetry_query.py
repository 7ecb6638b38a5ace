"""Reading telemetry for charts, the same over both storage layouts (plain PostgreSQL day
partitions with rollup tables, or a TimescaleDB hypertable with continuous aggregates: both
have ``telemetry``, ``telemetry_1m`` and ``telemetry_1h`` with the same columns).

``raw``: the stored rows of one point in [start, end), oldest first, up to a limit.
``bucketed``: min, max, avg, count and last of the numeric values per bucket; the bucket
size is chosen so that the range holds at most ``max_buckets`` buckets (1 s up to 7 days,
aligned to UTC). Buckets of a minute or more read the 1-minute rollups, of an hour or more
the 1-hour rollups, and the most recent minutes (which the rollups may not hold yet) are
aggregated from the raw rows, so a long range costs a few hundred rows to read and the
chart's right edge is current (on plain PostgreSQL, rows newer than the oldest minute
still waiting for the rollup job are read raw; TimescaleDB's real-time aggregates do this
themselves). Rows without a numeric value (text points, unreadable
points) are not in buckets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

BUCKETS = tuple(timedelta(seconds=s) for s in (
    1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    7 * 86400))
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # a Saturday: weekly buckets start on Saturdays
MAX_RAW_ROWS = 100_000


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
    time: datetime  # start of the bucket
    min: float
    max: float
    avg: float
    count: int
    last: float


@dataclass(frozen=True, slots=True)
class Series:
    bucket: timedelta
    source: str  # telemetry, telemetry_1m or telemetry_1h
    buckets: list[Bucket]


def choose_bucket(start: datetime, end: datetime, max_buckets: int = 500) -> timedelta:
    """The smallest bucket that splits [start, end) into at most ``max_buckets``."""
    _check_range(start, end)
    if max_buckets < 1:
        raise QueryError("max_buckets must be at least 1")
    span = end - start
    for b in BUCKETS:
        if span / b <= max_buckets:
            return b
    return BUCKETS[-1]


def source_for(bucket: timedelta) -> str:
    if bucket >= timedelta(hours=1) and bucket % timedelta(hours=1) == timedelta(0):
        return "telemetry_1h"
    if bucket >= timedelta(minutes=1) and bucket % timedelta(minutes=1) == timedelta(0):
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


_FROM_RAW = (
    "SELECT date_bin(%(b)s, time, %(o)s) AS t, min(value), max(value), avg(value), count(*),"
    " (array_agg(value ORDER BY time DESC))[1]"
    " FROM telemetry WHERE point_id = %(p)s AND time >= %(lo)s AND time < %(hi)s"
    " AND value IS NOT NULL GROUP BY 1"
)
_FROM_ROLLUP = (
    "SELECT date_bin(%(b)s, bucket, %(o)s) AS t, min(min), max(max),"
    " sum(avg * count) / sum(count), sum(count), (array_agg(last ORDER BY last_time DESC))[1]"
    " FROM {table} WHERE point_id = %(p)s AND bucket >= %(lo)s AND bucket < %(hi)s GROUP BY 1"
)


async def bucketed(
    conn: psycopg.AsyncConnection[Any], point_id: int, start: datetime, end: datetime, *,
    max_buckets: int = 500, bucket: timedelta | None = None, now: datetime | None = None,
) -> Series:
    """Buckets of [align(start), end), oldest first; ``bucket`` overrides the choice."""
    b = bucket if bucket is not None else choose_bucket(start, end, max_buckets)
    if b <= timedelta(0) or (end - start) / b > 10 * max(max_buckets, 500):
        raise QueryError(f"bucket {b} is too small for the range")
    source = source_for(b)
    lo = align(start, b)
    params: dict[str, Any] = {"b": b, "o": ORIGIN, "p": point_id, "lo": lo, "hi": end}
    if source == "telemetry":
        cur = await conn.execute(_FROM_RAW + " ORDER BY 1", params)
        rows = await cur.fetchall()
    else:
        current = now if now is not None else datetime.now(UTC)
        cut = min(end, max(lo, await _rolled_up_until(conn, current, b)))
        sql = (_FROM_ROLLUP.format(table=source).replace("%(hi)s", "%(cut)s") + " UNION ALL "
               + _FROM_RAW.replace("%(lo)s", "%(cut)s") + " ORDER BY 1")
        cur = await conn.execute(sql, params | {"cut": cut})
        rows = await cur.fetchall()
    return Series(b, source, [Bucket(r[0], float(r[1]), float(r[2]), float(r[3]), int(r[4]),
                                     float(r[5])) for r in rows])


async def _rolled_up_until(conn: psycopg.AsyncConnection[Any], now: datetime,
                           b: timedelta) -> datetime:
    """Where the rollups stop being complete, aligned down to ``b``: with TimescaleDB's
    real-time aggregates, never; on plain PostgreSQL, at the current minute or the oldest
    minute still marked for the rollup job."""
    cur = await conn.execute(
        "SELECT (SELECT layout FROM storage_layout), (SELECT min(bucket) FROM"
        " telemetry_rollup_dirty WHERE (SELECT layout FROM storage_layout) = 'partitions')")
    row = await cur.fetchone()
    if row is not None and row[0] == "timescaledb":
        return datetime.max.replace(tzinfo=UTC)
    until = now.replace(second=0, microsecond=0)
    if row is not None and row[1] is not None:
        until = min(until, row[1])
    return align(until, b)


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise QueryError("start and end must be timezone-aware")
    if end <= start:
        raise QueryError("end must be after start")
