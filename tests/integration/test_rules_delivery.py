"""The rules service's delivery guarantees against a real broker and PostgreSQL: a message is
acknowledged only once handled or dead-lettered (a refused one is retried a bounded number of
times, then dead-lettered with its reason), and every alarm and work-order event in the outbox
reaches MQTT once per event id, wherever it was made (the API's acknowledgement) and whenever
(events committed while no rules process ran)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from facility import events as outbox
from facility import topics
from facility.alarm_store import acknowledge
from facility.messages import AlarmEvent
from facility.mqtt import MqttClient
from facility.topics import TopicKind
from rules.handling import RulesService
from tests.integration.test_rules_service import (
    FREE,
    TRAPPED,
    Sender,
    all_handled,
    eventually,
    make_site,
    publisher,
    query,
    rules_running,
)


class AlarmsTopic:
    """Every message on the site's alarms topic, as it arrives."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.received: list[dict[str, Any]] = []

    async def collect(self) -> None:
        async for m in self.client.messages():
            self.received.append(json.loads(m.payload))

    async def until(self, check: Any, timeout_s: float = 15) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout_s):
            while not check(self.received):  # noqa: ASYNC110 - polled, not signalled
                await asyncio.sleep(0.05)
        return self.received


async def subscribe(mqtt_url: str, mqtt_protocol: str, site_id: str) -> MqttClient:
    client = MqttClient(mqtt_url, f"test-alarms-{uuid.uuid4().hex[:6]}", protocol=mqtt_protocol)
    await client.start()
    await client.wait_connected(10)
    await client.subscribe(topics.alarms(site_id))
    await client.wait_subscribed(10)
    return client


async def test_events_of_the_api_and_of_a_downtime_reach_mqtt_once_per_event_id(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=0.2)
    lift = f"{site_id}-lift"
    sub = await subscribe(mqtt_url, mqtt_protocol, site_id)
    seen = AlarmsTopic(sub)
    collector = asyncio.create_task(seen.collect())
    try:
        async with publisher(mqtt_url, mqtt_protocol) as pub:
            send = Sender(pub, site)
            async with rules_running(site, database_url, mqtt_url, mqtt_protocol):
                [(alarm_id,)] = await eventually(
                    database_url, "SELECT id FROM alarms",
                    while_waiting=lambda: send.telemetry(lift, TRAPPED))
                # an acknowledgement made elsewhere (the API's path): only in the outbox
                async with await psycopg.AsyncConnection.connect(database_url,
                                                                 autocommit=True) as conn:
                    await acknowledge(conn, alarm_id, "operator", datetime.now(UTC))
                await seen.until(lambda r: "alarm.acknowledged" in {e["event"] for e in r})
            # committed while no rules process runs (a crash between commit and publish)
            async with await psycopg.AsyncConnection.connect(database_url,
                                                             autocommit=True) as conn:
                await outbox.record(conn, site_id, [AlarmEvent(
                    ts=datetime.now(UTC), event="alarm.comment", alarm_id=alarm_id,
                    detail={"text": "written while rules was down"})])
            async with rules_running(site, database_url, mqtt_url, mqtt_protocol):
                await seen.until(lambda r: "alarm.comment" in {e["event"] for e in r})
                # a sentinel after everything: the relay publishes in outbox order, so once
                # it is here any republication of an earlier event would have come before it
                async with await psycopg.AsyncConnection.connect(database_url,
                                                                 autocommit=True) as conn:
                    await outbox.record(conn, site_id, [AlarmEvent(
                        ts=datetime.now(UTC), event="alarm.comment", alarm_id=alarm_id,
                        detail={"text": "sentinel"})])
                await seen.until(lambda r: any(e["detail"].get("text") == "sentinel"
                                               for e in r))
        rows = await query(database_url, "SELECT id, kind FROM events WHERE site_id = %s"
                           " AND (kind LIKE 'alarm.%%' OR kind LIKE 'work_order.%%')"
                           " ORDER BY id", site_id)
        ids = [e["event_id"] for e in seen.received]
        assert sorted(ids) == [r[0] for r in rows]  # every event, none twice
        assert {e["event"] for e in seen.received} >= {
            "alarm.raised", "work_order.created", "alarm.acknowledged", "alarm.comment"}
        [(mark,)] = await query(database_url, "SELECT published_id FROM outbox_relay"
                                " WHERE site_id = %s", site_id)
        assert mark == rows[-1][0]
    finally:
        collector.cancel()
        await sub.close()


async def test_a_message_the_database_refuses_is_dead_lettered_after_retries_then_acked(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=0)
    lift = f"{site_id}-lift"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE FUNCTION refuse_entrapment() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.alarm_type = 'entrapment' THEN RAISE EXCEPTION 'refused by the test';"
            " END IF; RETURN NEW; END $$")
        await conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON alarms FOR EACH ROW"
                           " EXECUTE FUNCTION refuse_entrapment()")
    client_id = f"rules-{site_id}-delivery"
    async with publisher(mqtt_url, mqtt_protocol) as pub:
        send = Sender(pub, site)
        async with rules_running(site, database_url, mqtt_url, mqtt_protocol,
                                 client_id=client_id):
            await send.telemetry(lift, {**TRAPPED, "alarm_button": True})
            rows = await eventually(database_url, "SELECT consumer, topic, reason, payload"
                                    " FROM dead_letters", timeout_s=30)
            [(consumer, topic, reason, payload)] = rows
            assert consumer == "rules" and topic.endswith(f"/{lift}/telemetry")
            assert "handling failed 3 times" in reason and "refused by the test" in reason
            assert json.loads(bytes(payload))["points"]["alarm_button"] is True
            # the next message is handled: the service did not stop at the failed one
            async with await psycopg.AsyncConnection.connect(database_url,
                                                             autocommit=True) as conn:
                await conn.execute("DROP TRIGGER refuse ON alarms")
            await send.telemetry(lift, {**TRAPPED, "car_floor": 3})
            await eventually(database_url, "SELECT id FROM alarms WHERE alarm_type ="
                             " 'entrapment'", timeout_s=30)
        # acknowledged: a restart on the same session gets no redelivery. A sentinel sent
        # after the restart (bad input: dead-lettered) comes after any redelivery, which the
        # broker sends first when the session resumes; once it is dead-lettered, the
        # session has had exactly one message, the sentinel
        services: list[RulesService] = []
        async with rules_running(site, database_url, mqtt_url, mqtt_protocol,
                                 client_id=client_id, on_service=services.append):
            await pub.publish(topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", lift),
                              b"{sentinel", qos=1, timeout_s=5)
            await eventually(database_url, "SELECT 1 FROM dead_letters WHERE payload = %s",
                             b"{sentinel", timeout_s=30)
            assert services[0].messages == 1
        reasons = await query(database_url, "SELECT reason FROM dead_letters ORDER BY id")
        assert len(reasons) == 2 and "handling failed 3 times" in reasons[0][0], reasons


async def test_a_replayed_older_message_never_undoes_the_live_state(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=30)
    lift = f"{site_id}-lift"
    past = datetime.now(UTC) - timedelta(minutes=5)
    services: list[RulesService] = []
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol,
                          on_service=services.append):
        send = Sender(pub, site)
        # live after the reconnection: the alarm button raises at once, whatever the on-delay
        await send.telemetry(lift, {**TRAPPED, "alarm_button": True})
        await eventually(database_url, "SELECT id FROM alarms WHERE active")
        # the backlog replays beside it: older, historical, the lift was fine then
        for s in range(0, 60, 10):
            await send.telemetry(lift, FREE, historical=True, ts=past + timedelta(seconds=s))
        await all_handled(services, send.sent)  # every replayed message handled, then assert
        rows = await query(database_url, "SELECT alarm_type, active, state, historical"
                           " FROM alarms")
    assert rows == [("entrapment", True, "unack", False)]
