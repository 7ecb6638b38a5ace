"""The storage layout ingest writes to, chosen at start, and its scheduled upkeep.

``prepare_layout``: a database on migration 0005's plain layout (day partitions, rollup
tables) moves to TimescaleDB (facility/db/timescale/layout.sql: hypertable, compression,
retention policy, continuous aggregates) when ``CREATE EXTENSION timescaledb`` succeeds
and telemetry is still empty; otherwise it stays on partitions. The choice is logged once.

``Maintenance`` (partitions layout only; TimescaleDB runs its own policies): every
``partition_interval_s`` it creates the day partitions from yesterday to
``partitions_ahead_days`` ahead and drops those wholly older than the retention; every
``rollup_interval_s`` it recomputes the 1-minute and 1-hour rollups of the closed minutes
that batches marked dirty. Each job holds a transaction-level advisory lock, so several
ingest processes never do the same work at once. A failure is logged and retried on the
next tick; ingest goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from importlib import resources

import psycopg

from facility.db.connect import connect_sync
from facility.messages import utcnow

log = logging.getLogger(__name__)
ROLLUP_LOCK = 7_411_006
PARTITION_LOCK = 7_411_007


class Layout(StrEnum):
    PARTITIONS = "partitions"
    TIMESCALEDB = "timescaledb"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    retention_days: int = 90
    rollup_1m_retention_days: int = 400
    partitions_ahead_days: int = 2
    partition_interval_s: float = 3600.0
    rollup_interval_s: float = 10.0
    timescale: bool = True  # use TimescaleDB when the extension can be created
    chunk_interval_hours: int = 6
    compress_after_hours: int = 24

    def __post_init__(self) -> None:
        if self.retention_days < 1 or self.partitions_ahead_days < 0:
            raise ValueError("retention_days must be >= 1 and partitions_ahead_days >= 0")
        if self.rollup_1m_retention_days < self.retention_days:
            raise ValueError("1-minute rollups must be kept at least as long as raw rows")
        if min(self.partition_interval_s, self.rollup_interval_s) <= 0:
            raise ValueError("maintenance intervals must be positive")
        if self.chunk_interval_hours < 1 or self.compress_after_hours < 1:
            raise ValueError("chunk_interval_hours and compress_after_hours must be >= 1")

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)


def timescale_sql(settings: StorageSettings) -> str:
    text = (resources.files("facility.db") / "timescale" / "layout.sql").read_text("utf-8")
    return (text.replace("{chunk_interval}", f"{settings.chunk_interval_hours} hours")
            .replace("{retention}", f"{settings.retention_days} days")
            .replace("{compress_after}", f"{settings.compress_after_hours} hours"))


def prepare_layout(conn: psycopg.Connection, settings: StorageSettings) -> Layout:
    """The layout of this database, moving it to TimescaleDB when that is possible."""
    row = conn.execute("SELECT layout FROM storage_layout").fetchone()
    layout = Layout(row[0]) if row else Layout.PARTITIONS
    if layout is Layout.TIMESCALEDB or not settings.timescale:
        return _logged(layout, "")
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _logged(layout, f"TimescaleDB not available: {reason}")
    has_rows = conn.execute("SELECT EXISTS (SELECT FROM telemetry)").fetchone()
    if has_rows and has_rows[0]:
        log.warning("TimescaleDB is available but telemetry already holds rows in day "
                    "partitions: staying on partitions (docs/storage.md says how to move)")
        return _logged(layout, "")
    with conn.transaction():
        conn.execute(timescale_sql(settings).encode())
    return _logged(Layout.TIMESCALEDB, "created the hypertable and continuous aggregates")


def _logged(layout: Layout, why: str) -> Layout:
    what = ("TimescaleDB hypertable with compression, retention and continuous aggregates"
            if layout is Layout.TIMESCALEDB
            else "plain PostgreSQL: daily partitions, BRIN on time, rollup tables")
    log.info("storage layout: %s%s", what, f" ({why})" if why else "")
    return layout


def maintain_partitions(conn: psycopg.Connection, settings: StorageSettings,
                        now: datetime) -> tuple[list[str], list[str]]:
    """Create the day partitions around ``now``, drop those past retention, and 1-minute
    rollups past theirs; (created, dropped) partition names."""
    created: list[str] = []
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        if not (r := locked.fetchone()) or not r[0]:
            return [], []
        today = now.date()
        for k in range(-1, settings.partitions_ahead_days + 1):
            day = today + timedelta(days=k)
            made = conn.execute("SELECT telemetry_ensure_partition(%s)", (day,)).fetchone()
            if made and made[0]:
                created.append(f"telemetry_p{day:%Y%m%d}")
        dropped = [r[0] for r in conn.execute(
            "SELECT telemetry_drop_partitions(%s)", (now - settings.retention,)).fetchall()]
        conn.execute("DELETE FROM telemetry_1m WHERE bucket < %s",
                     (now - timedelta(days=settings.rollup_1m_retention_days),))
    return created, dropped


def refresh_rollups(conn: psycopg.Connection, now: datetime) -> int:
    """Recompute the rollups of the closed minutes marked dirty; how many minutes."""
    closed = now.replace(second=0, microsecond=0)
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ROLLUP_LOCK,))
        if not (r := locked.fetchone()) or not r[0]:
            return 0
        minutes = sorted(r[0] for r in conn.execute(
            "DELETE FROM telemetry_rollup_dirty WHERE bucket < %s RETURNING bucket",
            (closed,)).fetchall())
        for lo, hi in _runs(minutes):
            conn.execute("SELECT telemetry_rollup(%s, %s)", (lo, hi))
    return len(minutes)


def _runs(minutes: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Contiguous [lo, hi) ranges covering the sorted minute buckets."""
    step = timedelta(minutes=1)
    runs: list[tuple[datetime, datetime]] = []
    for m in minutes:
        if runs and runs[-1][1] == m:
            runs[-1] = (runs[-1][0], m + step)
        else:
            runs.append((m, m + step))
    return runs


class Maintenance:
    """The scheduled jobs of the partitions layout, run until cancelled."""

    def __init__(self, database_url: str, settings: StorageSettings,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._url = database_url
        self._settings = settings
        self._clock = clock
        self.rollup_runs = 0
        self._failing: set[str] = set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._every(self._settings.partition_interval_s, "partitions",
                                       self._partitions), name="ingest-partitions")
            tg.create_task(self._every(self._settings.rollup_interval_s, "rollups",
                                       self._rollups), name="ingest-rollups")

    async def _every(self, interval_s: float, name: str, job: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await asyncio.to_thread(job)
                if name in self._failing:
                    self._failing.discard(name)
                    log.info("storage job %s recovered", name)
            except (psycopg.Error, OSError) as exc:
                if name not in self._failing:
                    self._failing.add(name)
                    log.warning("storage job %s failed (%s); retrying every %.0f s", name,
                                str(exc).strip(), interval_s)
            next_at += interval_s
            while next_at <= loop.time():
                next_at += interval_s  # skip ticks missed while busy or down
            await asyncio.sleep(next_at - loop.time())

    def _partitions(self) -> None:
        with connect_sync(self._url) as conn:
            created, dropped = maintain_partitions(conn, self._settings, self._clock())
        if created or dropped:
            log.info("telemetry partitions: created %s, dropped past %d days retention %s",
                     created or "none", self._settings.retention_days, dropped or "none")

    def _rollups(self) -> None:
        with connect_sync(self._url) as conn:
            n = refresh_rollups(conn, self._clock())
        self.rollup_runs += 1
        if n:
            log.debug("rolled up %d minute(s)", n)
