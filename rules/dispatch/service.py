"""The dispatcher: runs inside the rules service for one site.

``load_for_site`` finds and validates the dispatch file (``--dispatch``, else
``<site>-dispatch.yaml`` beside the site file; none: dispatch is off) at start-up.
``Dispatcher.committed`` is the rules service's hook, called for each event it committed:
a new work order or alarm wakes the SLA sweep, which adopts every new open order (opened by an alarm
or at the service desk; scheduled ones are assigned as they open) in its own transaction:
assignment to whoever is on call and the start of its SLA clock, and every new
unacknowledged alarm (its acknowledgement SLA, ``alarm_watch``); the same sweep escalates
procedure steps past their time limit (``step_timers``). So a dispatch failure can
never roll back an alarm, and every origin takes one path. ``Dispatcher.run`` stores the
staff and rosters, then drives four APScheduler interval jobs on the running loop until
cancelled: the SLA sweep, notification delivery, preventive maintenance and the on-call
snapshot, which first reloads the rosters and shift swaps from the database (edits through
the API take effect within ROSTER_RELOAD_S, no restart). Every timer lives in
PostgreSQL (``dispatch_timers``, ``pm_occurrences``, ``notification_deliveries``), so a
restart resumes them; the jobs only decide when to look.
``clock`` is injectable so that tests can move time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from psycopg_pool import AsyncConnectionPool

from facility.db.connect import pool as db_pool
from facility.db.outage import describe, is_outage
from facility.messages import AlarmEvent
from facility.procedures import Procedure
from facility.site import Site
from rules.dispatch import alarm_watch, inspections, maintenance, step_timers
from rules.dispatch.config import Dispatch, DispatchConfig, default_path, load_dispatch
from rules.dispatch.directory import (
    load_rosters,
    missing_users,
    refresh_on_call,
    sync_directory,
)
from rules.dispatch.notify import Deliverer
from rules.dispatch.orders import Context, sweep

log = logging.getLogger(__name__)
ROSTER_RELOAD_S = 10.0  # an edit of a roster or a swap (API) takes effect within this
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def load_for_site(site: Site, procedures: dict[str, Procedure],
                  path: Path | None = None) -> Dispatch | None:
    """The site's dispatch file, validated; None when there is none (dispatch off)."""
    if path is None:
        path = default_path(site)
        if not path.exists():
            log.info("no dispatch file %s: automatic assignment and escalation are off", path)
            return None
    return load_dispatch(path, site, procedures)


class Dispatcher:
    def __init__(
        self, site: Site, dispatch: Dispatch, procedures: dict[str, Procedure],
        database_url: str, *, publish: Callable[[AlarmEvent], None] | None = None,
        clock: Clock = utc_now, sla_every_s: float = 1.0, deliver_every_s: float = 0.5,
    ) -> None:
        self.site = site
        self.ctx = Context(site.id, dispatch, procedures)
        self.database_url = database_url
        self._publish = publish
        self.clock = clock
        self.sla_every_s = sla_every_s
        self.deliver_every_s = deliver_every_s
        self._pool: AsyncConnectionPool[Any] | None = None
        self._database_down = False
        self._deliverer: Deliverer | None = None
        self._device_ids: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._sweep_lock = asyncio.Lock()  # the job and a wake-up never sweep at once
        self._deliver_lock = asyncio.Lock()

    @property
    def config(self) -> DispatchConfig:
        return self.ctx.dispatch.config

    def committed(self, ev: AlarmEvent) -> None:
        """Hook: the rules service committed (and is publishing) this event. A new work
        order wakes the sweep at once, which assigns it and starts its SLA clock."""
        if ev.event in ("work_order.created", "alarm.raised", "work_order.accepted"):
            self._wake.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Run the jobs until cancelled."""
        async with (
            db_pool(self.database_url, min_size=1, max_size=4, name="dispatch") as pool,
            httpx.AsyncClient() as client,
        ):
            self._pool = pool
            self._deliverer = Deliverer(self.config, client, self.ctx.dispatch.keys)
            await self._start(pool)
            scheduler = AsyncIOScheduler(timezone=self.config.tz)
            now = utc_now()
            jobs: list[tuple[Callable[[], Any], float]] = [
                (self.sweep_sla, self.sla_every_s), (self.deliver, self.deliver_every_s),
                (self.maintain, self.config.maintenance.check_every_s),
                (self.refresh_on_call, ROSTER_RELOAD_S)]
            for func, every_s in jobs:
                scheduler.add_job(self._guarded(func), "interval", seconds=every_s,
                                  id=func.__name__,
                                  next_run_time=now, max_instances=1, coalesce=True,
                                  misfire_grace_time=max(30, int(every_s * 2)))
            scheduler.start()
            log.info("dispatch for site %s: %d staff, %d rosters, %d channels, "
                     "%d maintenance schedules", self.site.id, len(self.config.staff),
                     len(self.config.rosters), len(self.config.channels),
                     len(self.config.maintenance.schedules))
            if ready is not None:
                ready.set()
            try:
                while True:  # woken by committed(): assign new orders without waiting
                    await self._wake.wait()
                    self._wake.clear()
                    await self._guarded(self.sweep_sla)()
                    await self._guarded(self.deliver)()
            finally:
                scheduler.shutdown(wait=False)

    def _guarded(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``job``, riding out a database outage (a failover): logged once, the job's next
        run (or the next wake) tries again; every timer lives in the database, so nothing
        is lost meanwhile. A refusal is logged with its traceback; neither stops dispatch."""

        async def run() -> None:
            try:
                await job()
            except psycopg.Error as exc:
                if not is_outage(exc):
                    log.exception("dispatch job %s failed", job.__name__)
                elif not self._database_down:
                    self._database_down = True
                    log.warning("dispatch: database unavailable (%s); timers wait for it",
                                describe(exc))
                return
            if self._database_down:
                self._database_down = False
                log.info("dispatch: database back")

        return run

    async def _start(self, pool: AsyncConnectionPool[Any]) -> None:
        async with pool.connection() as conn:
            await sync_directory(conn, self.site.id, self.config)
            self.ctx.dispatch.config = await load_rosters(conn, self.site.id, self.config,
                                                          self.clock())
            await maintenance.sync_schedules(conn, self.ctx)
            missing = await missing_users(conn, self.config)
            if missing:
                log.warning("staff without an active login (they cannot accept orders on the "
                            "technician page): %s", ", ".join(missing))
            cur = await conn.execute("SELECT name, id FROM devices WHERE site_id = %s",
                                     (self.site.id,))
            self._device_ids = {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    def _emit(self, events: list[AlarmEvent]) -> None:
        if self._publish is not None:
            for ev in events:
                self._publish(ev)

    async def sweep_sla(self) -> None:
        """Work orders' SLA timers, then alarms' acknowledgement SLA and step timers."""
        assert self._pool is not None
        async with self._sweep_lock, self._pool.connection() as conn:
            now = self.clock()
            orders = await sweep(conn, self.ctx, now)
            self._emit(orders)  # committed: published before the alarms' turn
            async with conn.transaction():
                await alarm_watch.adopt(conn, self.ctx, now)
                others = await alarm_watch.advance(conn, self.ctx, now)
                others += await step_timers.escalate_overdue(conn, self.ctx, now)
        self._emit(others)
        if orders or others:
            self._wake.set()  # their notifications are due now

    async def deliver(self) -> None:
        assert self._pool is not None and self._deliverer is not None
        async with self._deliver_lock, self._pool.connection() as conn:
            while await self._deliverer.deliver_due(conn, self.site.id, self.clock()) > 0:
                pass

    async def maintain(self) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            self._emit(await maintenance.check(conn, self.ctx, self.site, self._device_ids,
                                               self.clock()))
            self._emit(await inspections.open_due(conn, self.ctx, self.site, self._device_ids,
                                                  self.clock()))

    async def refresh_on_call(self) -> None:
        """Reload the rosters and shift swaps (edited through the API), then write who is
        on call now."""
        assert self._pool is not None
        async with self._pool.connection() as conn:
            now = self.clock()
            self.ctx.dispatch.config = await load_rosters(conn, self.site.id, self.config, now)
            await refresh_on_call(conn, self.site.id, self.config, now)
