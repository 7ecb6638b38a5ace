"""Statutory inspections from the asset ledger against a real PostgreSQL (issue 16 item 1):
an inspection due within 30 days opens one work order for the device (its trade's on-call
technician assigned, due on the date, the booking-inspection-certificate steps), once per
due date even when checked again; one further off opens nothing; a new due date entered
after the inspection opens the next order when its time comes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from facility.db.registry import load_ids, sync_site
from facility.procedures import upsert_procedures
from facility.site import Site, load_site
from rules.dispatch import inspections
from rules.dispatch.config import Dispatch, DispatchConfig
from rules.dispatch.orders import Context
from tests.integration.dispatch_support import ALL_DAY, PROCEDURES

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 2, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as sync:
        sync_site(sync, load_site(ROOT / "sites" / "demo.yaml"))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        await upsert_procedures(c, PROCEDURES)
        yield c


def context() -> Context:
    config = DispatchConfig.model_validate({
        "site": "demo", "staff": [{"username": u} for u in ("tech-lift", "tech-any")],
        "rosters": {"elevator": {"shifts": [{**ALL_DAY, "on_call": ["tech-lift"]}]},
                    **{t: {"shifts": [{**ALL_DAY, "on_call": ["tech-any"]}]}
                       for t in ("electrical", "plumbing", "fire", "general")}}})
    return Context("demo", Dispatch(config, {}, ROOT), PROCEDURES)


async def set_due(conn: psycopg.AsyncConnection[Any], device: str, due: date) -> None:
    await conn.execute(
        "INSERT INTO device_assets (device, registration_code, contractor, inspection_due)"
        " VALUES (%s, '3110', '维保A', %s) ON CONFLICT (device) DO UPDATE"
        " SET inspection_due = EXCLUDED.inspection_due", (device, due))


async def test_an_inspection_falling_due_opens_one_order_per_due_date(
    conn: psycopg.AsyncConnection[Any], database_url: str,
) -> None:
    site: Site = load_site(ROOT / "sites" / "demo.yaml")
    with psycopg.connect(database_url) as sync:
        ids = load_ids(sync, "demo").devices
    ctx = context()
    await set_due(conn, "a-elevator-1", date(2026, 3, 21))
    await set_due(conn, "b-elevator-1", date(2026, 6, 1))  # three months off: not yet
    events = await inspections.open_due(conn, ctx, site, ids, NOW)
    assert [(e.event, e.device) for e in events] == [
        ("work_order.created", "a-elevator-1"), ("work_order.assigned", "a-elevator-1")]
    assert await inspections.open_due(conn, ctx, site, ids, NOW + timedelta(hours=1)) == []
    (wo, fault, origin, trade, assignee, due, title, steps), = await (await conn.execute(
        "SELECT id, fault, origin, trade, assignee, due_at, title, (SELECT count(*) FROM"
        " work_order_steps s WHERE s.work_order_id = w.id) FROM work_orders w")).fetchall()
    assert (fault, origin, trade, assignee, steps) == (
        "statutory_inspection", "schedule", "elevator", "tech-lift", 3)
    assert due == datetime(2026, 3, 20, 16, tzinfo=UTC)  # 2026-03-21 00:00 in Shanghai
    assert "2026-03-21" in title

    # inspected; the next due date is a year on: its order opens 30 days before
    await set_due(conn, "a-elevator-1", date(2027, 3, 21))
    assert await inspections.open_due(conn, ctx, site, ids, NOW + timedelta(days=30)) == []
    later = datetime(2027, 2, 25, 2, tzinfo=UTC)
    events = await inspections.open_due(conn, ctx, site, ids, later)
    assert [e.device for e in events if e.event == "work_order.created"] == [
        "a-elevator-1", "b-elevator-1"]
    assert wo not in [e.work_order_id for e in events]
