"""Preventive maintenance in the database (psycopg async): opens scheduled work orders.

``check`` runs every ``maintenance.check_every``: for each schedule and each device it
selects, it asks the pure functions of ``rules.dispatch.schedule`` what is due and, in one
transaction per device, inserts the ``pm_occurrences`` row (its primary key is what makes an
occurrence open once, even with two rules processes), opens the work order (origin
``schedule``, the checklist's items as steps, due at the end of the period or ``due_within``
after a run-hours threshold), assigns it to whoever is on call for the checklist's trade
(``start_order``) and records skipped occurrences as missed. Run-hours readings come from
``latest_values`` (good quality only). Compliance is the ``pm_compliance`` view."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.events import record
from facility.messages import AlarmEvent
from facility.site import Site
from facility.workorders import add_event
from rules.dispatch.checklists import Checklist
from rules.dispatch.config import Schedule, select_devices
from rules.dispatch.orders import Context, start_order
from rules.dispatch.schedule import Occurrence, calendar_due, run_hours_due

log = logging.getLogger(__name__)
ACTOR = "schedule"

_INSERT_ORDER = (
    "INSERT INTO work_orders (site_id, device_id, source, fault, origin, title, description,"
    " trade, priority, state, created_at, updated_at, due_at)"
    " VALUES (%s, %s, %s, %s, 'schedule', %s, %s, %s, %s, 'open', %s, %s, %s) RETURNING id"
)
_STEP = (
    "INSERT INTO work_order_steps (work_order_id, seq, role, action, action_en, required)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
_OCCURRENCE = (
    "INSERT INTO pm_occurrences (site_id, schedule_id, source, occurrence, due_at, opened_at,"
    " missed) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
)
_READING = (
    "SELECT v.value FROM latest_values v JOIN points p ON p.id = v.point_id"
    " JOIN devices d ON d.id = p.device_id WHERE d.name = %s AND p.name = %s"
    " AND v.quality = 0 AND v.value IS NOT NULL"
)


async def sync_schedules(conn: psycopg.AsyncConnection[Any], ctx: Context) -> None:
    """Store the schedules (for the API's PM report); removed ones are deleted."""
    cfg = ctx.dispatch.config
    async with conn.transaction():
        await conn.execute("DELETE FROM pm_schedules WHERE site_id = %s", (ctx.site_id,))
        for s in cfg.maintenance.schedules:
            cl = ctx.dispatch.checklists[s.checklist]
            every = s.every or (f"{s.run_hours.every_h:g}h" if s.run_hours else "")
            await conn.execute(
                "INSERT INTO pm_schedules (site_id, id, checklist, title, trade, kind, every,"
                " body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (ctx.site_id, s.id, s.checklist, cl.title, cl.trade,
                 "calendar" if s.every else "run_hours", every,
                 Jsonb(s.model_dump(mode="json", by_alias=True))))


async def check(conn: psycopg.AsyncConnection[Any], ctx: Context, site: Site,
                device_ids: dict[str, int], now: datetime) -> list[AlarmEvent]:
    """Open every scheduled order that is due now; returns the events to publish."""
    events: list[AlarmEvent] = []
    for sch in ctx.dispatch.config.maintenance.schedules:
        checklist = ctx.dispatch.checklists[sch.checklist]
        for dev in select_devices(sch.select, site):
            try:
                async with conn.transaction():
                    if sch.every is not None:
                        events += await _calendar(conn, ctx, sch, checklist, dev,
                                                  device_ids.get(dev), now)
                    else:
                        events += await _run_hours(conn, ctx, sch, checklist, dev,
                                                   device_ids.get(dev), now)
            except psycopg.Error:
                log.exception("maintenance schedule %s for %s failed", sch.id, dev)
    return events


async def _calendar(conn: psycopg.AsyncConnection[Any], ctx: Context, sch: Schedule,
                    checklist: Checklist, dev: str, device_id: int | None, now: datetime
                    ) -> list[AlarmEvent]:
    cur = await conn.execute(
        "SELECT max(occurrence) FROM pm_occurrences WHERE site_id = %s AND schedule_id = %s"
        " AND source = %s AND occurrence ~ '^[0-9]{4}-'", (ctx.site_id, sch.id, dev))
    row = await cur.fetchone()
    last = row[0] if row else None
    assert sch.start is not None
    n, unit = sch.period()
    current, missed = calendar_due(sch.start, n, unit, timedelta(seconds=sch.lead_s),
                                   ctx.dispatch.config.tz, now, last)
    for occ in missed:
        await conn.execute(_OCCURRENCE, (ctx.site_id, sch.id, dev, occ.key, occ.due_at,
                                         occ.open_at, True))
    if missed:
        log.warning("maintenance %s for %s: %d occurrences missed while stopped",
                    sch.id, dev, len(missed))
    if current is None:
        return []
    return await _open(conn, ctx, sch, checklist, dev, device_id, current, now)


async def _run_hours(conn: psycopg.AsyncConnection[Any], ctx: Context, sch: Schedule,
                     checklist: Checklist, dev: str, device_id: int | None, now: datetime
                     ) -> list[AlarmEvent]:
    assert sch.run_hours is not None
    events: list[AlarmEvent] = []
    for point in sch.run_hours.points:
        row = await (await conn.execute(_READING, (dev, point))).fetchone()
        if row is None:
            continue
        hours = float(row[0])
        cur = await conn.execute(
            "SELECT hours FROM pm_run_hours WHERE site_id = %s AND schedule_id = %s"
            " AND source = %s AND point = %s FOR UPDATE", (ctx.site_id, sch.id, dev, point))
        prev = await cur.fetchone()
        await conn.execute(
            "INSERT INTO pm_run_hours (site_id, schedule_id, source, point, hours, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (site_id, schedule_id, source, point)"
            " DO UPDATE SET hours = EXCLUDED.hours, updated_at = EXCLUDED.updated_at",
            (ctx.site_id, sch.id, dev, point, hours, now))
        threshold = run_hours_due(sch.run_hours.every_h, None if prev is None else prev[0],
                                  hours)
        if threshold is not None:
            occ = Occurrence(f"{point}@{threshold:g}h", now,
                             now + timedelta(seconds=sch.due_within_s))
            events += await _open(conn, ctx, sch, checklist, dev, device_id, occ, now,
                                  note=f"{point} = {hours:g} h (every {sch.run_hours.every_h:g} h)")
    return events


async def _open(conn: psycopg.AsyncConnection[Any], ctx: Context, sch: Schedule,
                checklist: Checklist, dev: str, device_id: int | None, occ: Occurrence,
                now: datetime, note: str = "") -> list[AlarmEvent]:
    """Open the occurrence's work order, once; [] if it was opened before."""
    cur = await conn.execute(_OCCURRENCE, (ctx.site_id, sch.id, dev, occ.key, occ.due_at,
                                           now, False))
    if await cur.fetchone() is None:
        return []
    title = f"{checklist.title}: {dev}"
    description = f"{checklist.title_en} ({occ.key}). {note}".strip()
    cur = await conn.execute(_INSERT_ORDER, (
        ctx.site_id, device_id, dev, checklist.id, title, description, checklist.trade,
        checklist.priority, now, now, occ.due_at))
    row = await cur.fetchone()
    assert row is not None
    wo_id = int(row[0])
    async with conn.cursor() as c:
        await c.executemany(_STEP, [(wo_id, seq, i.role, i.action, i.action_en, i.required)
                                    for seq, i in enumerate(checklist.items, start=1)])
    await conn.execute(
        "UPDATE pm_occurrences SET work_order_id = %s WHERE site_id = %s AND schedule_id = %s"
        " AND source = %s AND occurrence = %s", (wo_id, ctx.site_id, sch.id, dev, occ.key))
    detail = {"schedule": sch.id, "checklist": checklist.id, "occurrence": occ.key,
              "due_at": occ.due_at.isoformat()}
    await add_event(conn, wo_id, "created", ACTOR, now, None, "open", detail)
    created = AlarmEvent(ts=now, event="work_order.created", work_order_id=wo_id, device=dev,
                         alarm_type=checklist.id, state="open", priority=checklist.priority,
                         detail={**detail, "title": title})
    await record(conn, ctx.site_id, [created])
    log.info("maintenance %s for %s opened work order %d, due %s", sch.id, dev, wo_id,
             occ.due_at.isoformat())
    return [created, *await start_order(conn, ctx, wo_id, now)]
