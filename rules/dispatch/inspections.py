"""Statutory inspections from the asset ledger (``device_assets.inspection_due``, migration
0012): ``open_due`` opens one work order per device and due date once the date is within
``INSPECTION_LEAD_DAYS`` (an elevator's annual inspection by the special-equipment
inspection body, TSG T7001, is booked weeks ahead), assigned like any order to whoever is
on call for the device's trade. ``device_assets.inspection_order_for`` records the date an
order was opened for, in the same transaction, so two rules processes open it once. The
ledger page and GET /api/v1/assets/inspections-due show the warning before it falls due."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any

import psycopg

from facility.events import record
from facility.messages import AlarmEvent
from facility.site import Site
from facility.workorders import add_event
from rules.dispatch.orders import Context, start_order

log = logging.getLogger(__name__)
ACTOR = "schedule"
FAULT = "statutory_inspection"
INSPECTION_LEAD_DAYS = 30
TRADE_OF_TYPE = {"elevator": "elevator", "pump_set": "plumbing", "leak_detector": "plumbing",
                 "switchgear": "electrical", "fire_panel": "fire", "gas_detector": "general"}
STEPS = (
    ("engineering_supervisor", "联系维保单位及特种设备检验机构 预约定期检验日期。",
     "Book the statutory inspection with the maintenance contractor and the inspection body."),
    ("technician", "检验前完成自检并准备维保记录。检验当日陪同检验。",
     "Do the self-check before, have the maintenance records ready and accompany the"
     " inspector on the day."),
    ("engineering_supervisor",
     "取得检验报告/合格证并张贴于设备处。在设备台账中更新下次检验日期。",
     "File the report and certificate, post it at the equipment and enter the next due date in"
     " the asset ledger."),
)


def due_at(due: date, ctx: Context) -> datetime:
    return datetime.combine(due, time(0, 0), tzinfo=ctx.dispatch.config.tz)


async def open_due(conn: psycopg.AsyncConnection[Any], ctx: Context, site: Site,
                   device_ids: dict[str, int], now: datetime) -> list[AlarmEvent]:
    """Open the inspection orders that are due within the lead time; the events to publish."""
    today = now.astimezone(ctx.dispatch.config.tz).date()
    events: list[AlarmEvent] = []
    for device in site.devices.values():
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    "UPDATE device_assets SET inspection_order_for = inspection_due"
                    " WHERE device = %s AND inspection_due <= %s"
                    " AND inspection_order_for IS DISTINCT FROM inspection_due"
                    " RETURNING inspection_due, registration_code, contractor,"
                    " contractor_phone",
                    (device.id, today + timedelta(days=INSPECTION_LEAD_DAYS)))
                row = await cur.fetchone()
                if row is None:
                    continue
                events += await _open(conn, ctx, device.id, device.type,
                                      device_ids.get(device.id), row, now)
        except psycopg.Error:
            log.exception("statutory inspection order for %s failed", device.id)
    return events


async def _open(conn: psycopg.AsyncConnection[Any], ctx: Context, dev: str, dev_type: str,
                device_id: int | None, row: tuple[Any, ...], now: datetime
                ) -> list[AlarmEvent]:
    due, registration, contractor, phone = row
    trade = TRADE_OF_TYPE.get(dev_type, "general")
    title = f"定期检验到期 Statutory inspection due {due.isoformat()}: {dev}"
    description = (f"注册代码 {registration or '—'}; 维保单位 contractor {contractor or '—'}"
                   f" {phone or ''}").strip()
    cur = await conn.execute(
        "INSERT INTO work_orders (site_id, device_id, source, fault, origin, title, description,"
        " trade, priority, state, created_at, updated_at, due_at) VALUES"
        " (%s, %s, %s, %s, 'schedule', %s, %s, %s, 'medium', 'open', %s, %s, %s) RETURNING id",
        (ctx.site_id, device_id, dev, FAULT, title, description, trade, now, now,
         due_at(due, ctx)))
    created_row = await cur.fetchone()
    assert created_row is not None
    wo_id = int(created_row[0])
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO work_order_steps (work_order_id, seq, role, action, action_en,"
            " required) VALUES (%s, %s, %s, %s, %s, true)",
            [(wo_id, seq, role, zh, en) for seq, (role, zh, en) in enumerate(STEPS, start=1)])
    detail = {"inspection_due": due.isoformat()}
    await add_event(conn, wo_id, "created", ACTOR, now, None, "open", detail)
    created = AlarmEvent(ts=now, event="work_order.created", work_order_id=wo_id, device=dev,
                         alarm_type=FAULT, state="open", priority="medium",
                         detail={**detail, "title": title})
    await record(conn, ctx.site_id, [created])
    log.info("statutory inspection of %s due %s: opened work order %d", dev, due, wo_id)
    return [created, *await start_order(conn, ctx, wo_id, now)]
