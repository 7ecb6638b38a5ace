"""The acknowledgement SLA against a real PostgreSQL, time injected into the dispatcher: an
alarm without an order escalates at its priority's acknowledge time and then to the
supervisor; returned to normal unacknowledged its timer stops when it next falls due, back to
unacknowledged it goes on from the level reached (no repeat of level 1); shelved it waits
for the shelf; each step is an alarm event, an outbox event and an audit row."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from facility.db.registry import sync_site
from facility.procedures import upsert_procedures
from facility.site import load_site
from rules.dispatch.config import Dispatch, DispatchConfig
from rules.dispatch.service import Dispatcher
from tests.integration.dispatch_support import ALL_DAY, PROCEDURES, Clock, running

ROOT = Path(__file__).resolve().parents[2]



def dispatch() -> Dispatch:
    cfg = DispatchConfig.model_validate({
        "site": "demo",
        "staff": [{"username": u, "channels": ["log"]} for u in ("tech", "op-1", "op-2", "boss")],
        "rosters": {**{t: {"shifts": [{**ALL_DAY, "on_call": ["tech"]}]}
                       for t in ("elevator", "electrical", "plumbing", "fire", "general")},
                    "duty_room": {"shifts": [{**ALL_DAY, "on_call": ["op-1", "op-2"]}]},
                    "engineering_supervisor": {"backup": ["boss"]}},
        "channels": {"log": {"type": "log"}},
        "acknowledgement": {"acknowledge": {"high": "2m"}, "without_order": {
            "levels": [{"after": "0s", "notify": "next"}, {"after": "10m", "notify": "supervisor"}],
            "renotify_every": "1h"}},
    })
    return Dispatch(cfg, {}, ROOT / "sites" / "x.yaml")


async def until(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> Any:
    async with asyncio.timeout(15):
        while True:
            row = await (await conn.execute(sql, args)).fetchone()
            if row is not None and row[0]:
                return row[0]
            await asyncio.sleep(0.05)


async def test_an_alarm_without_an_order_escalates_pauses_and_goes_on(database_url: str) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    site = load_site(ROOT / "sites" / "demo.yaml")
    with psycopg.connect(database_url, autocommit=True) as sync:
        sync_site(sync, site)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await upsert_procedures(conn, PROCEDURES)
        (alarm,) = await (await conn.execute(
            "INSERT INTO alarms (site_id, source, alarm_type, rule_id, priority, state, active,"
            " raised_at) VALUES ('demo', 'gw-a', 'gateway_offline', 'gateway_offline', 'high',"
            " 'unack', true, %s) RETURNING id", (t0,))).fetchone()  # type: ignore[misc]
        levels = ("SELECT array_agg((detail->>'level')::int ORDER BY id) FROM alarm_events"
                  " WHERE alarm_id = %s AND event = 'escalated'")
        clock = Clock(t0 + timedelta(seconds=1))
        async with running(Dispatcher(site, dispatch(), PROCEDURES, database_url,
                                      clock=clock)):
            due = await until(conn, "SELECT due_at FROM alarm_timers WHERE alarm_id = %s",
                              alarm)
            clock.now = t0 + timedelta(minutes=2)
            assert await until(conn, levels, alarm) == [1]
            await conn.execute("UPDATE alarms SET state = 'rtn_unack', active = false"
                               " WHERE id = %s", (alarm,))
            clock.now = t0 + timedelta(minutes=12)  # the supervisor's level falls due
            await until(conn, "SELECT due_at IS NULL FROM alarm_timers WHERE alarm_id = %s",
                        alarm)  # returned to normal: the timer stops, nobody is called
            assert await until(conn, levels, alarm) == [1]
            clock.now = t0 + timedelta(minutes=20)
            await conn.execute("UPDATE alarms SET state = 'unack', active = true,"
                               " shelved_until = %s WHERE id = %s",
                               (t0 + timedelta(minutes=30), alarm))
            clock.now = t0 + timedelta(minutes=21)  # shelved: waits for the shelf
            await until(conn, "SELECT due_at = %s FROM alarm_timers WHERE alarm_id = %s",
                        t0 + timedelta(minutes=30), alarm)
            assert await until(conn, levels, alarm) == [1]
            clock.now = t0 + timedelta(minutes=30)
            assert await until(conn, levels + " HAVING count(*) = 2", alarm) == [1, 2]
        people = [r[0] for r in await (await conn.execute(
            "SELECT detail->>'person' FROM alarm_events WHERE alarm_id = %s AND event ="
            " 'escalated' ORDER BY id", (alarm,))).fetchall()]
        audit = await (await conn.execute(
            "SELECT count(*) FROM audit_log WHERE target = %s", (f"alarm:{alarm}",))).fetchone()
        outbox = await (await conn.execute(
            "SELECT count(*) FROM events WHERE kind = 'alarm.escalated'")).fetchone()
    assert due == t0 + timedelta(minutes=2)  # the priority's acknowledge time
    assert people == ["op-2", "boss"] and audit == (2,) and outbox == (2,)
