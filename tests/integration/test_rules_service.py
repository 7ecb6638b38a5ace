"""The rules service against a real broker and a real PostgreSQL: telemetry in, alarms and
work orders with their procedures' steps out, ISA-18.2 clearing, rule state across a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest
import yaml

from facility import topics
from facility.alarm_store import acknowledge
from facility.messages import DeviceStatus, Telemetry, encode
from facility.mqtt import MqttClient
from facility.procedures import load_procedures
from facility.site import Site, load_site
from facility.topics import TopicKind
from rules.handling import RulesService
from rules.service import run_rules

ROOT = Path(__file__).resolve().parents[2]
PROCEDURES = ROOT / "procedures"
TRAPPED = {"moving": False, "door_zone": False, "door_closed": True, "passengers": 2,
           "alarm_button": False, "car_floor": 7}
FREE = {**TRAPPED, "door_zone": True}


def make_site(tmp_path: Path, site_id: str, on_delay_s: float = 0.5) -> Site:
    raw = {
        "site": site_id,
        "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw-a"}],
        "buildings": [{"id": "a", "gateway": "gw-a", "devices": [
            {"id": f"{site_id}-lift", "type": "elevator", "profile": "elevator",
             "address": {"protocol": "modbus", "port": 15021}},
            {"id": f"{site_id}-panel", "type": "fire_panel", "profile": "firepanel",
             "address": {"protocol": "bacnet", "port": 47811, "device_instance": 1001}},
        ]}],
        "rules": {"entrapment": {"on_delay_s": on_delay_s}},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_site(path)


@contextlib.asynccontextmanager
async def rules_running(site: Site, database_url: str, mqtt_url: str, mqtt_protocol: str,
                        client_id: str | None = None,
                        on_service: Callable[[RulesService], None] | None = None,
                        ) -> AsyncIterator[asyncio.Task[None]]:
    ready = asyncio.Event()
    task = asyncio.create_task(run_rules(
        site, database_url, mqtt_url, procedures_dir=PROCEDURES, mqtt_protocol=mqtt_protocol,
        ready=ready, tick_s=0.1, client_id=client_id, on_service=on_service))
    try:
        async with asyncio.timeout(20):
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # raises what made the service fail at start
            yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def publisher(mqtt_url: str, mqtt_protocol: str) -> AsyncIterator[MqttClient]:
    async with MqttClient(mqtt_url, f"test-pub-{uuid.uuid4().hex[:6]}",
                          protocol=mqtt_protocol) as c:
        await c.wait_connected(10)
        yield c


async def all_handled(services: list[RulesService], sent: int, timeout_s: float = 15) -> None:
    """The barrier before asserting that messages changed nothing: until every service has
    handled as many messages as were sent (each instance receives them all)."""
    async with asyncio.timeout(timeout_s):
        while any(s.handled < sent for s in services):  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.02)


class Sender:
    def __init__(self, client: MqttClient, site: Site) -> None:
        self.client, self.site, self.seq, self.sent = client, site, 0, 0

    async def telemetry(self, device: str, points: dict[str, Any], *,
                        historical: bool = False, ts: datetime | None = None) -> None:
        self.seq += 1
        self.sent += 1
        msg = Telemetry(ts=ts or datetime.now(UTC), seq=self.seq, session="s1", points=points,
                        historical=historical)
        topic = topics.device_topic(TopicKind.TELEMETRY, self.site.id, "gw-a", device)
        await self.client.publish(topic, encode(msg), qos=1, timeout_s=5)

    async def status(self, device: str, state: Literal["online", "offline"]) -> None:
        self.sent += 1
        topic = topics.device_topic(TopicKind.DEVICE_STATUS, self.site.id, "gw-a", device)
        await self.client.publish(topic, encode(DeviceStatus(ts=datetime.now(UTC), state=state)),
                                  qos=1, timeout_s=5)


async def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


async def eventually(url: str, sql: str, *args: Any, check: Callable[[list[Any]], bool] = bool,
                     while_waiting: Callable[[], Awaitable[None]] | None = None,
                     timeout_s: float = 10) -> list[tuple[Any, ...]]:
    """Poll a query until ``check(rows)``; optionally keep doing something meanwhile."""
    async with asyncio.timeout(timeout_s):
        while True:
            rows = await query(url, sql, *args)
            if check(rows):
                return rows
            if while_waiting is not None:
                await while_waiting()
            await asyncio.sleep(0.1)


async def test_entrapment_opens_one_alarm_and_one_work_order_with_the_steps(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id)
    lift = f"{site_id}-lift"
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol):
        events: list[dict[str, Any]] = []
        async with MqttClient(mqtt_url, f"test-sub-{site_id}", protocol=mqtt_protocol) as sub:
            await sub.wait_connected(10)
            await sub.subscribe(topics.alarms(site_id))
            await sub.wait_subscribed(10)
            send = Sender(pub, site)
            await eventually(database_url, "SELECT id FROM work_orders",
                             while_waiting=lambda: send.telemetry(lift, TRAPPED))
            for _ in range(8):  # the condition keeps arriving after the alarm is up
                await send.telemetry(lift, TRAPPED)
                await asyncio.sleep(0.1)
            await send.telemetry(lift, {"car_floor": 7})  # a partial update changes nothing
            async with asyncio.timeout(5):
                async for m in sub.messages():
                    events.append(json.loads(m.payload))
                    if {"alarm.raised", "work_order.created"} <= {e["event"] for e in events}:
                        break

        alarms = await query(database_url, "SELECT id, source, alarm_type, rule_id, priority,"
                             " state, active, repeat_count, device_id FROM alarms")
        assert len(alarms) == 1
        alarm_id, source, atype, rule, prio, state, active, repeats, device_id = alarms[0]
        assert (source, atype, rule, prio, state, active, repeats) == (
            lift, "entrapment", "entrapment", "critical", "unack", True, 0)
        assert device_id is not None
        orders = await query(database_url, "SELECT id, alarm_id, procedure_id, origin, state,"
                             " trade, source, fault FROM work_orders")
        assert len(orders) == 1
        wo_id, wo_alarm, proc, origin, wo_state, trade, wo_source, fault = orders[0]
        assert (wo_alarm, proc, origin, wo_state, trade, wo_source, fault) == (
            alarm_id, "elevator_entrapment", "alarm", "open", "elevator", lift, "entrapment")
        steps = await query(database_url, "SELECT seq, role, action, action_en, required"
                            " FROM work_order_steps WHERE work_order_id = %s ORDER BY seq", wo_id)
        expected = load_procedures(PROCEDURES)["elevator_entrapment"].steps
        assert [(s[1], s[2], s[3], s[4]) for s in steps] == [
            (e.role, e.action, e.action_en, e.required) for e in expected]
        assert steps[0][0] == 1 and "安抚" in steps[0][2]
        assert await query(database_url, "SELECT event, actor FROM alarm_events") == [
            ("raised", "rules")]
        assert await query(database_url, "SELECT event, to_state FROM work_order_events") == [
            ("created", "open")]
        by_event = {e["event"]: e for e in events}
        assert by_event["alarm.raised"]["alarm_id"] == alarm_id
        assert by_event["work_order.created"]["work_order_id"] == wo_id

        # the condition clears: unacknowledged -> returned to normal, unacknowledged
        await send.telemetry(lift, FREE)
        rows = await eventually(database_url, "SELECT state, active, cleared_at FROM alarms",
                                check=lambda r: r[0][1] is False)
        assert rows[0][0] == "rtn_unack" and rows[0][2] is not None
        # the work order stays open: the technician resolves it, not the telemetry
        assert await query(database_url, "SELECT state FROM work_orders") == [("open",)]


async def test_acknowledged_alarm_becomes_normal_when_it_clears_and_a_new_one_can_open(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=0.2)
    lift = f"{site_id}-lift"
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol):
        send = Sender(pub, site)
        [(alarm_id,)] = await eventually(database_url, "SELECT id FROM alarms",
                                         while_waiting=lambda: send.telemetry(lift, TRAPPED))
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await acknowledge(conn, alarm_id, "operator", datetime.now(UTC))
        await send.telemetry(lift, FREE)
        rows = await eventually(database_url, "SELECT state, active, closed_at, acked_by"
                                " FROM alarms", check=lambda r: r[0][0] == "normal")
        assert rows[0][1] is False and rows[0][2] is not None and rows[0][3] == "operator"
        events = await query(database_url, "SELECT event, actor FROM alarm_events ORDER BY id")
        assert events == [("raised", "rules"), ("acknowledged", "operator"),
                          ("cleared", "rules"), ("closed", "rules")]
        # a second entrapment is a new alarm; the work order still open is linked, not doubled
        await eventually(database_url, "SELECT id FROM alarms WHERE state = 'unack'",
                         while_waiting=lambda: send.telemetry(lift, TRAPPED))
        assert len(await query(database_url, "SELECT id FROM alarms")) == 2
        assert len(await query(database_url, "SELECT id FROM work_orders")) == 1
        await eventually(database_url, "SELECT 1 FROM work_order_events"
                         " WHERE event = 'linked_repeat'")


async def test_fire_alarm_in_zone_3_opens_the_fire_alarm_signal_work_order(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id)
    panel = f"{site_id}-panel"
    zones = {f"zone_{i}_alarm": i == 3 for i in range(1, 5)}
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol):
        send = Sender(pub, site)
        rows = await eventually(
            database_url, "SELECT w.procedure_id, w.trade, w.priority, a.alarm_type,"
            " a.detail, a.message, w.id FROM work_orders w JOIN alarms a ON a.id = w.alarm_id",
            while_waiting=lambda: send.telemetry(panel, zones))
    proc, trade, prio, atype, detail, message, wo_id = rows[0]
    assert (proc, trade, prio, atype) == ("fire_alarm_signal", "fire", "critical", "fire_alarm")
    assert detail["points"] == ["zone_3_alarm"]
    assert "zone_3_alarm" in message
    steps = await query(database_url, "SELECT action FROM work_order_steps"
                        " WHERE work_order_id = %s ORDER BY seq", wo_id)
    assert len(steps) == 7 and "消防控制室" in steps[0][0]



async def test_a_second_zone_in_alarm_updates_the_open_fire_alarm(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    """The duty room must see every zone in alarm: a zone that joins an active fire alarm
    updates its message and detail (an event, no second alarm, no repeat)."""
    site = make_site(tmp_path, site_id)
    panel = f"{site_id}-panel"

    def zones(*on: int) -> dict[str, bool]:
        return {f"zone_{i}_alarm": i in on for i in range(1, 5)}

    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol):
        send = Sender(pub, site)
        await send.telemetry(panel, zones(2))
        await eventually(database_url, "SELECT id FROM alarms WHERE alarm_type = 'fire_alarm'")
        await send.telemetry(panel, zones(2, 4))
        rows = await eventually(
            database_url, "SELECT detail, message, repeat_count, state FROM alarms"
            " WHERE alarm_type = 'fire_alarm'",
            check=lambda r: r[0][0].get("points") == ["zone_2_alarm", "zone_4_alarm"])
    _detail, message, repeats, state = rows[0]
    assert "zone_2_alarm, zone_4_alarm" in message and repeats == 0 and state == "unack"
    events = await query(database_url, "SELECT e.event, e.detail->'points' FROM alarm_events e"
                         " JOIN alarms a ON a.id = e.alarm_id WHERE a.alarm_type = 'fire_alarm'"
                         " ORDER BY e.id")
    assert events == [("raised", None), ("updated", ["zone_2_alarm", "zone_4_alarm"])]
    outbox = await query(database_url, "SELECT count(*) FROM events WHERE kind = 'alarm.updated'")
    assert outbox == [(1,)]


async def test_rule_state_survives_a_restart_mid_on_delay(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=2.5)
    lift = f"{site_id}-lift"
    state_sql = "SELECT state FROM rule_state WHERE source = %s AND rule_id = 'entrapment'"
    async with publisher(mqtt_url, mqtt_protocol) as pub:
        send = Sender(pub, site)
        async with rules_running(site, database_url, mqtt_url, mqtt_protocol):
            [(saved,)] = await eventually(database_url, state_sql, lift,
                                          while_waiting=lambda: send.telemetry(lift, TRAPPED))
        assert saved["condition"] is True and saved["active"] is False
        assert await query(database_url, "SELECT id FROM alarms") == []
        # restarted, and no telemetry at all: the saved timer alone raises the alarm
        async with rules_running(site, database_url, mqtt_url, mqtt_protocol):
            rows = await eventually(database_url, "SELECT raised_at FROM alarms")
            await eventually(database_url, "SELECT id FROM work_orders")
    [(after,)] = await query(database_url, state_sql, lift)
    assert after["active"] is True and after["since"] == saved["since"]
    held = rows[0][0] - datetime.fromisoformat(saved["since"])
    assert held.total_seconds() >= 2.5


async def test_a_critical_fault_over_before_the_replay_is_recorded_with_a_follow_up_order(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=0)
    lift = f"{site_id}-lift"
    past = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    # an entrapment from 10:00 to 10:20 (ten minutes ago) and a controller fault code (a
    # high-priority rule: no follow-up) replayed from a gateway buffer
    replay = ((0, TRAPPED), (10, TRAPPED), (20, FREE), (30, FREE),
              (40, {**FREE, "fault_code": 5}), (50, {**FREE, "fault_code": 5}),
              (60, {**FREE, "fault_code": 0}), (70, {**FREE, "fault_code": 0}))
    async with publisher(mqtt_url, mqtt_protocol) as pub:
        for _attempt in range(2):  # the second: a redelivery to a restarted service
            services: list[RulesService] = []
            async with rules_running(site, database_url, mqtt_url, mqtt_protocol,
                                     on_service=services.append):
                send = Sender(pub, site)
                for s, points in replay:
                    await send.telemetry(lift, points, historical=True,
                                         ts=past + timedelta(seconds=s))
                await eventually(database_url, "SELECT id FROM alarms",
                                 check=lambda r: len(r) == 2)
                await send.telemetry(lift, FREE)  # live: the lift is fine now
                await all_handled(services, send.sent)  # then: nothing recorded twice
    rows = await query(database_url, "SELECT alarm_type, state, active, historical, raised_at,"
                       " cleared_at, work_order_id FROM alarms ORDER BY raised_at")
    assert len(rows) == 2  # recorded once, however often replayed
    (atype, state, active, historical, raised_at, cleared_at, wo) = rows[0]
    assert (atype, state, active, historical) == ("entrapment", "normal", False, True)
    # freed at 10:20, cleared when its 2 s off-delay ran out
    assert raised_at == past and cleared_at == past + timedelta(seconds=22)
    assert rows[1][0] == "elevator_fault" and rows[1][3] is True and rows[1][6] is None
    [(wo_id, proc, origin, after, title, desc)] = await query(
        database_url, "SELECT id, procedure_id, origin, after_the_fact, title, description"
        " FROM work_orders")
    assert wo == wo_id and proc == "elevator_entrapment" and origin == "alarm"
    assert after is True and "found after the fact" in title and "cut off" in desc
    assert len(await query(database_url, "SELECT seq FROM work_order_steps"
                           " WHERE work_order_id = %s", wo_id)) > 0
    kinds = [k for (k,) in await query(database_url, "SELECT kind FROM events ORDER BY id")]
    assert kinds.count("alarm.historical") == 2 and kinds.count("work_order.created") == 1


async def test_device_offline_raises_an_alarm_without_a_work_order_and_bad_input_is_kept(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id)
    lift = f"{site_id}-lift"
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol):
        send = Sender(pub, site)
        await pub.publish(topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", lift),
                          b"not json", qos=1, timeout_s=5)
        await send.status(lift, "offline")
        rows = await eventually(database_url, "SELECT alarm_type, priority, state FROM alarms")
        assert rows == [("device_offline", "high", "unack")]
        await send.status(lift, "online")
        await eventually(database_url, "SELECT 1 FROM alarms WHERE state = 'rtn_unack'")
        letters = await eventually(database_url, "SELECT consumer, reason FROM dead_letters")
    assert letters[0][0] == "rules" and "JSON" in letters[0][1]
    assert await query(database_url, "SELECT id FROM work_orders") == []


@pytest.mark.parametrize("bad", [{"entrapmant": {"on_delay_s": 1}}])
async def test_a_site_override_of_an_unknown_rule_is_refused(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
    bad: dict[str, Any],
) -> None:
    site = make_site(tmp_path, site_id)
    raw = yaml.safe_load(site.path.read_text(encoding="utf-8"))
    site.path.write_text(yaml.safe_dump({**raw, "rules": bad}), encoding="utf-8")
    from facility.config_errors import ConfigError

    with pytest.raises(ConfigError, match=r"rules\.entrapmant"):
        await run_rules(load_site(site.path), database_url, mqtt_url,
                        procedures_dir=PROCEDURES, mqtt_protocol=mqtt_protocol)


async def test_an_older_message_arriving_late_does_not_undo_a_newer_one(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A redelivered or reordered message (same gateway session, lower seq) saying the car is
    free must not cancel the entrapment the newer message reported; a repeat is ignored too."""
    site = make_site(tmp_path, site_id)
    lift = f"{site_id}-lift"
    topic = topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", lift)

    def message(seq: int, points: dict[str, Any]) -> bytes:
        return encode(Telemetry(ts=datetime.now(UTC), seq=seq, session="s1", points=points))

    caplog.set_level("INFO", logger="rules")
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol):
        await pub.publish(topic, message(10, TRAPPED), qos=1, timeout_s=5)
        await pub.publish(topic, message(9, FREE), qos=1, timeout_s=5)  # older, late
        await pub.publish(topic, message(10, FREE), qos=1, timeout_s=5)  # same seq again
        rows = await eventually(database_url, "SELECT alarm_type, active FROM alarms")
        assert rows == [("entrapment", True)]
    ignored = [r.getMessage() for r in caplog.records if "ignored telemetry" in r.getMessage()]
    assert len(ignored) == 2 and all(lift in m for m in ignored), ignored
    assert "seq 9 of session s1 is not after 10" in ignored[0]
