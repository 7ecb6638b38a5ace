"""Dispatch against a real PostgreSQL: a new alarm work order is assigned to whoever is on
call, escalated up the procedure's chain when nobody accepts (time is injected), with events
and notifications recorded, and the SLA timers survive a restart of the dispatcher;
preventive maintenance opens each occurrence once, with its checklist, and compliance is
recorded; the rules service wires it all (telemetry in, an assigned order out)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from facility import topics
from facility.db.registry import load_ids, sync_site
from facility.messages import Telemetry, encode
from facility.mqtt import MqttClient
from facility.procedures import upsert_procedures
from facility.site import Site, load_site
from facility.topics import TopicKind
from facility.workorders import complete_step, transition
from rules.dispatch import maintenance
from rules.dispatch.checklists import load_checklists
from rules.dispatch.config import Dispatch, DispatchConfig
from rules.dispatch.orders import Context
from rules.dispatch.service import Dispatcher
from rules.service import run_rules
from tests.integration.dispatch_support import (
    ALL_DAY,
    PROCEDURES,
    Clock,
    eventually,
    open_entrapment,
    running,
)

ROOT = Path(__file__).resolve().parents[2]


def dispatch_config(site_id: str, **extra: Any) -> DispatchConfig:
    people = ["tech-lift", "boss", "gm", "tech-any"]
    return DispatchConfig.model_validate({
        "site": site_id,
        "staff": [{"username": u, "channels": ["log"]} for u in people],
        "rosters": {
            "elevator": {"shifts": [{**ALL_DAY, "on_call": ["tech-lift"]}], "backup": ["boss"]},
            **{t: {"shifts": [{**ALL_DAY, "on_call": ["tech-any"]}]}
               for t in ("electrical", "plumbing", "fire", "general")},
            "engineering_supervisor": {"backup": ["boss"]},
            "property_manager": {"backup": ["gm"]},
        },
        "channels": {"log": {"type": "log"}},
        **extra,
    })



@pytest.fixture
def site() -> Site:
    return load_site(ROOT / "sites" / "demo.yaml")


@pytest.fixture
async def conn(database_url: str, site: Site) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as sync:
        sync_site(sync, site)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        await upsert_procedures(c, PROCEDURES)
        yield c


async def test_assigned_on_call_then_escalated_and_timers_survive_a_restart(
    database_url: str, site: Site, conn: psycopg.AsyncConnection[Any],
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    dispatch = Dispatch(dispatch_config("demo"), {}, ROOT / "sites" / "x.yaml")
    published: list[str] = []
    wo = await open_entrapment(conn, t0, PROCEDURES)
    clock = Clock(t0 + timedelta(seconds=1))

    first = Dispatcher(site, dispatch, PROCEDURES, database_url, clock=clock,
                       publish=lambda ev: published.append(ev.event))
    async with running(first):
        rows = await eventually(conn, "SELECT state, assignee FROM work_orders WHERE id = %s"
                                      " AND state = 'assigned'", wo)
        assert rows == [("assigned", "tech-lift")]
        due = await eventually(conn, "SELECT due_at FROM dispatch_timers WHERE"
                                     " work_order_id = %s AND due_at IS NOT NULL", wo)
        assert due == [(t0 + timedelta(minutes=5),)]  # the accept SLA of the procedure
    assert "work_order.assigned" in published
    (actor,), = await (await conn.execute(
        "SELECT actor FROM work_order_events WHERE work_order_id = %s AND event = 'assigned'",
        (wo,))).fetchall()
    assert actor == "dispatch"

    # The service was down past the accept SLA; a new dispatcher finds the timer in the
    # database and escalates: nobody accepted.
    clock.now = t0 + timedelta(minutes=6)
    second = Dispatcher(site, dispatch, PROCEDURES, database_url, clock=clock,
                        publish=lambda ev: published.append(ev.event))
    async with running(second):
        (detail,), = await eventually(
            conn, "SELECT detail FROM work_order_events WHERE work_order_id = %s"
                  " AND event = 'escalated'", wo)
        assert detail["level"] == 1
        assert (detail["role"], detail["person"]) == ("engineering_supervisor", "boss")
        await eventually(conn, "SELECT 1 FROM notification_deliveries WHERE work_order_id = %s"
                               " AND event = 'escalated' AND state = 'sent'", wo)
        kinds = [r[0] for r in await (await conn.execute(
            "SELECT kind FROM events WHERE payload->>'work_order_id' = %s ORDER BY id",
            (str(wo),))).fetchall()]
        assert "work_order.escalated" in kinds and "work_order.sla_breached" in kinds

        # The technician accepts: the chain stops; the arrive SLA still counts.
        await transition(conn, wo, "accepted", "tech-lift", now=clock.now)
        clock.now = t0 + timedelta(minutes=31)
        await eventually(conn, "SELECT 1 FROM work_order_events WHERE work_order_id = %s"
                               " AND event = 'sla_breached' AND detail->>'sla' = 'arrive'", wo)
    (levels,), = await (await conn.execute(
        "SELECT count(*) FROM work_order_events WHERE work_order_id = %s"
        " AND event = 'escalated'", (wo,))).fetchall()
    assert levels == 1  # 15 and 30 minute levels never fired: someone accepted
    assert "work_order.escalated" in published


async def test_nobody_on_call_leaves_the_order_open_and_tells_the_duty_room(
    database_url: str, site: Site, conn: psycopg.AsyncConnection[Any],
) -> None:
    cfg = dispatch_config("demo").model_copy(update={"rosters": {
        **dispatch_config("demo").rosters,
        "elevator": dispatch_config("demo").rosters["fire"].model_copy(
            update={"shifts": (), "backup": ()})}})
    dispatch = Dispatch(cfg, {}, ROOT / "sites" / "x.yaml")
    t0 = datetime.now(UTC)
    wo = await open_entrapment(conn, t0, PROCEDURES)
    async with running(Dispatcher(site, dispatch, PROCEDURES, database_url,
                                  clock=Clock(t0))):
        await eventually(conn, "SELECT 1 FROM work_order_events WHERE work_order_id = %s"
                               " AND event = 'unassigned'", wo)
    (state,), = await (await conn.execute("SELECT state FROM work_orders WHERE id = %s",
                                          (wo,))).fetchall()
    assert state == "open"


def pm_dispatch(site_id: str) -> Dispatch:
    cfg = dispatch_config(site_id, maintenance={"schedules": [
        {"id": "lift-half-monthly", "checklist": "elevator_half_monthly",
         "devices": {"devices": ["a-elevator-1"]}, "every": "15d", "start": "2025-01-01",
         "lead": "1d"},
        {"id": "pump-hours", "checklist": "pump_run_hours", "devices": {"devices": ["a-pumps"]},
         "run_hours": {"points": ["run_hours_1"], "every": 500}, "due_within": "7d"},
    ]})
    return Dispatch(cfg, load_checklists(ROOT / "maintenance"), ROOT / "sites" / "x.yaml")


async def set_run_hours(conn: psycopg.AsyncConnection[Any], hours: float, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO latest_values (point_id, time, value, quality) SELECT p.id, %s, %s, 0"
        " FROM points p JOIN devices d ON d.id = p.device_id WHERE d.name = 'a-pumps'"
        " AND p.name = 'run_hours_1' ON CONFLICT (point_id) DO UPDATE"
        " SET value = EXCLUDED.value, time = EXCLUDED.time", (at, hours))


async def test_maintenance_opens_each_occurrence_once_and_records_compliance(
    database_url: str, site: Site, conn: psycopg.AsyncConnection[Any],
) -> None:
    dispatch = pm_dispatch("demo")
    ctx = Context("demo", dispatch, PROCEDURES)
    with psycopg.connect(database_url) as sync:
        device_ids = load_ids(sync, "demo").devices
    await maintenance.sync_schedules(conn, ctx)
    now = datetime(2025, 3, 20, 2, tzinfo=UTC)  # 10:00 in Shanghai; period of 2025-03-17
    await set_run_hours(conn, 1480, now)
    events = await maintenance.check(conn, ctx, site, device_ids, now)
    again = await maintenance.check(conn, ctx, site, device_ids, now + timedelta(minutes=1))
    assert again == []
    assert [e.event for e in events] == ["work_order.created", "work_order.assigned"]
    (wo, origin, state, assignee, due, fault), = await (await conn.execute(
        "SELECT id, origin, state, assignee, due_at, fault FROM work_orders")).fetchall()
    assert (origin, state, assignee, fault) == ("schedule", "assigned", "tech-lift",
                                               "elevator_half_monthly")
    assert due == datetime(2025, 4, 1, tzinfo=UTC) - timedelta(hours=8)  # next period, local
    (steps,), = await (await conn.execute(
        "SELECT count(*) FROM work_order_steps WHERE work_order_id = %s", (wo,))).fetchall()
    assert steps == len(dispatch.checklists["elevator_half_monthly"].items)

    # run hours: 1480 was the baseline; crossing 1500 opens one service order
    await set_run_hours(conn, 1502, now + timedelta(minutes=2))
    events = await maintenance.check(conn, ctx, site, device_ids, now + timedelta(minutes=2))
    assert events[0].event == "work_order.created" and events[0].device == "a-pumps"
    assert await maintenance.check(conn, ctx, site, device_ids,
                                   now + timedelta(minutes=3)) == []

    # do the half-monthly order in time: compliant
    for seq in range(1, steps + 1):
        await complete_step(conn, wo, seq, "tech-lift", now=now)
    for to in ("accepted", "on_site", "resolved"):
        await transition(conn, wo, to, "tech-lift", now=now + timedelta(hours=1))
    rows = await (await conn.execute(
        "SELECT schedule_id, occurrence, on_time, missed FROM pm_compliance"
        " ORDER BY schedule_id")).fetchall()
    assert rows[0] == ("lift-half-monthly", "2025-03-17", True, False)
    # still open, and its due time (2025) is past by the database's clock: overdue
    assert rows[1][:3] == ("pump-hours", "run_hours_1@1500h", False)

    # the service was stopped for a month: skipped periods are missed, the current one opens
    later = datetime(2025, 4, 20, 2, tzinfo=UTC)
    events = await maintenance.check(conn, ctx, site, device_ids, later)
    assert sum(e.event == "work_order.created" for e in events) == 1
    missed = await (await conn.execute(
        "SELECT occurrence, on_time FROM pm_compliance WHERE missed ORDER BY occurrence"
    )).fetchall()
    assert missed == [("2025-04-01", False)]


async def test_the_rules_service_assigns_a_new_alarm_order_to_the_person_on_call(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    lift = f"{site_id}-lift"
    raw = {"site": site_id, "profiles_dir": str(ROOT / "profiles"), "gateways": [{"id": "gw-a"}],
           "buildings": [{"id": "a", "gateway": "gw-a", "devices": [
               {"id": lift, "type": "elevator", "profile": "elevator",
                "address": {"protocol": "modbus", "port": 15021}}]}],
           "rules": {"entrapment": {"on_delay_s": 0.5}}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    # found by convention beside the site file
    (tmp_path / "site-dispatch.yaml").write_text(yaml.safe_dump(
        dispatch_config(site_id).model_dump(mode="json", by_alias=True, exclude_defaults=True)),
        encoding="utf-8")
    site = load_site(tmp_path / "site.yaml")
    trapped: dict[str, bool | int | float | str] = {
        "moving": False, "door_zone": False, "door_closed": True, "passengers": 2,
        "alarm_button": False, "car_floor": 7}
    ready = asyncio.Event()
    task = asyncio.create_task(run_rules(
        site, database_url, mqtt_url, procedures_dir=ROOT / "procedures",
        mqtt_protocol=mqtt_protocol, ready=ready, tick_s=0.1))
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        async with MqttClient(mqtt_url, f"test-pub-{site_id}", protocol=mqtt_protocol) as pub, \
                await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await pub.wait_connected(10)
            topic = topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", lift)
            async with asyncio.timeout(20):
                for seq in range(1, 10_000):
                    msg = Telemetry(ts=datetime.now(UTC), seq=seq, session="s1", points=trapped)
                    await pub.publish(topic, encode(msg), qos=1, timeout_s=5)
                    rows = await (await conn.execute(
                        "SELECT state, assignee FROM work_orders")).fetchall()
                    if rows and rows[0][0] == "assigned":
                        break
                    await asyncio.sleep(0.1)
            assert rows == [("assigned", "tech-lift")]
            kinds = {r[0] for r in await (await conn.execute(
                "SELECT kind FROM events")).fetchall()}
            assert {"work_order.created", "work_order.assigned"} <= kinds
            (timers,), = await (await conn.execute(
                "SELECT count(*) FROM dispatch_timers WHERE due_at IS NOT NULL")).fetchall()
            assert timers == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
