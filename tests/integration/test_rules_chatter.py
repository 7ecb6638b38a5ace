"""An intermittent signal through the rules service, a real broker and PostgreSQL: a fire-panel
trouble that comes and goes faster than its 5 s on-delay raises one alarm flagged chattering
with one work order; its repeats update the alarm; the alarm-load report counts the point."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from api.alarm_load import alarm_load
from rules.handling import RulesService
from tests.integration.test_rules_service import (
    Sender,
    all_handled,
    eventually,
    make_site,
    publisher,
    query,
    rules_running,
)

# every trouble point of the panel (a missing one would leave "any trouble" unknown)
QUIET = {f"zone_{z}_trouble": False for z in range(1, 5)}
TROUBLE = {**QUIET, "zone_1_trouble": True}


async def test_a_chattering_trouble_raises_one_alarm_and_one_order_and_is_counted(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id)
    panel = f"{site_id}-panel"
    start = datetime.now(UTC)
    services: list[RulesService] = []
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol,
                          on_service=services.append):
        send = Sender(pub, site)
        await send.telemetry(panel, QUIET)
        for _ in range(2):  # twice: each shorter than the on-delay, nothing yet
            await send.telemetry(panel, TROUBLE)
            await asyncio.sleep(0.5)
            await send.telemetry(panel, QUIET)
            await asyncio.sleep(0.5)
        await all_handled(services, send.sent)  # every change handled, then: nothing yet
        assert await query(database_url, "SELECT id FROM alarms") == []
        for _ in range(3):  # the third occurrence raises; the next two update it
            await send.telemetry(panel, TROUBLE)
            await asyncio.sleep(0.5)
            await send.telemetry(panel, QUIET)
            await asyncio.sleep(0.5)
        rows = await eventually(
            database_url, "SELECT id, active, detail->>'occurrences', message FROM alarms",
            check=lambda r: bool(r) and r[0][2] == "5", timeout_s=10)
    [(alarm_id, active, _n, message)] = rows
    assert active is True and "间歇" in message  # held while it chatters
    events = [e for (e,) in await query(database_url, "SELECT event FROM alarm_events"
                                        " WHERE alarm_id = %s ORDER BY id", alarm_id)]
    assert events == ["raised", "updated", "updated"]
    orders = await query(database_url, "SELECT procedure_id FROM work_orders")
    assert orders == [("fire_system_fault",)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        report = await alarm_load(conn, site_id, start - timedelta(minutes=1),
                                  datetime.now(UTC) + timedelta(minutes=1))
    assert [(c["source"], c["alarm_type"]) for c in report["chattering"]] == [
        (panel, "fire_trouble")]
