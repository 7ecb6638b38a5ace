"""Nothing fails silently, against a real PostgreSQL, a real broker and a local provider
server that checks every signature: an entrapment alarm nobody acknowledges escalates at its
procedure's acknowledge time with an SMS and then a voice call; a gateway-offline alarm (no
work order) follows the without-order policy, and acknowledging it drops the call still due.
The SLA times are short ones written into the test's own procedure and dispatch files; every
wait is on a condition."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from facility import alarm_store, topics
from facility.messages import AlarmEvent, GatewayStatus, Telemetry, encode
from facility.mqtt import MqttClient
from facility.site import load_site
from facility.topics import TopicKind
from rules.service import run_rules
from tests.integration.dispatch_support import ALL_DAY, eventually
from tests.integration.gateway_support import Inbox
from tests.integration.provider_support import KEYS_ENV, phone_channels, provider_server

ROOT = Path(__file__).resolve().parents[2]
TRAPPED: dict[str, bool | int | float | str] = {
    "moving": False, "door_zone": False, "door_closed": True, "passengers": 2,
    "alarm_button": False, "car_floor": 7}


def write_files(tmp: Path, site_id: str, url: str, acknowledgement: dict[str, Any],
                voice_after: str) -> Path:
    """A one-lift site, procedures with a 2 s acknowledge time for entrapments, and a
    dispatch file whose loud ladder sends SMS at once and calls after ``voice_after``."""
    procs = tmp / "procedures"
    shutil.copytree(ROOT / "procedures", procs)
    entrapment = yaml.safe_load((procs / "elevator_entrapment.yaml").read_text("utf-8"))
    entrapment["sla"]["acknowledge"] = "2s"
    (procs / "elevator_entrapment.yaml").write_text(yaml.safe_dump(entrapment,
                                                                   allow_unicode=True), "utf-8")
    site = {"site": site_id, "profiles_dir": str(ROOT / "profiles"),
            "gateways": [{"id": "gw-a"}],
            "buildings": [{"id": "a", "gateway": "gw-a", "devices": [
                {"id": f"{site_id}-lift", "type": "elevator", "profile": "elevator",
                 "address": {"protocol": "modbus", "port": 15021}}]}],
            "rules": {"entrapment": {"on_delay_s": 0.5}}}
    (tmp / "site.yaml").write_text(yaml.safe_dump(site), "utf-8")
    staff = [{"username": "tech-lift"}, {"username": "op-1", "mobile": "13800000011"},
             {"username": "op-2", "mobile": "13800000012"},
             {"username": "boss", "mobile": "+8613800000013"}]
    dispatch = {
        "site": site_id, "staff": staff,
        "rosters": {**{t: {"shifts": [{**ALL_DAY, "on_call": ["tech-lift"]}]}
                       for t in ("elevator", "electrical", "plumbing", "fire", "general")},
                    "duty_room": {"shifts": [{**ALL_DAY, "on_call": ["op-1", "op-2"]}]},
                    "engineering_supervisor": {"backup": ["boss"]}},
        "channels": {"log": {"type": "log"}, **phone_channels(url)},
        "notify": {"always": ["log"], "retry": {"attempts": 3, "initial": "1s"}},
        "loud": {"sms": ["ali-sms", "tc-sms"], "voice": ["ali-call"],
                 "by_priority": {p: {"sms_after": "0s", "voice_after": voice_after}
                                 for p in ("critical", "high")}},
        "acknowledgement": acknowledgement,
    }
    (tmp / "site-dispatch.yaml").write_text(yaml.safe_dump(dispatch, allow_unicode=True),
                                            "utf-8")
    return procs


@contextlib.asynccontextmanager
async def rules_running(tmp: Path, procs: Path, database_url: str, mqtt_url: str,
                        mqtt_protocol: str) -> AsyncIterator[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(run_rules(
        load_site(tmp / "site.yaml"), database_url, mqtt_url, procedures_dir=procs,
        mqtt_protocol=mqtt_protocol, ready=ready, tick_s=0.1))
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_unacknowledged_entrapment_texts_then_calls_at_its_acknowledge_time(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in KEYS_ENV.items():
        monkeypatch.setenv(k, v)
    async with provider_server(("LTAI-test", "ali-secret"), ("AKID-test", "tc-secret")) as srv:
        procs = write_files(tmp_path, site_id, srv.url(), {"roster": "duty_room"}, "2s")
        async with rules_running(tmp_path, procs, database_url, mqtt_url, mqtt_protocol), \
                MqttClient(mqtt_url, f"pub-{site_id}", protocol=mqtt_protocol) as pub, \
                await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await pub.wait_connected(10)
            topic = topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", f"{site_id}-lift")
            async with asyncio.timeout(20):
                for seq in range(1, 10_000):
                    await pub.publish(topic, encode(Telemetry(
                        ts=datetime.now(UTC), seq=seq, session="s1", points=TRAPPED)),
                        qos=1, timeout_s=5)
                    if await (await conn.execute("SELECT 1 FROM alarm_timers")).fetchone():
                        break
                    await asyncio.sleep(0.1)
            sms = await srv.wait("SendSms")
            call = await srv.wait("SingleCallByTts")
            texts = await srv.wait("TencentSendSms")
            (alarm_id, raised, ack_due, policy), = await eventually(
                conn, "SELECT a.id, a.raised_at, t.ack_due_at, t.policy FROM alarms a"
                      " JOIN alarm_timers t ON t.alarm_id = a.id")
            escalated = await inbox.wait_for(AlarmEvent, TopicKind.ALARMS, None,
                                             lambda m: m.event == "alarm.escalated")
            delivered = await eventually(
                conn, "SELECT count(*) FROM notification_deliveries WHERE"
                      " alarm_id = %s AND event = 'alarm_escalated' AND channel LIKE 'ali-%%'"
                      " AND state = 'sent' HAVING count(*) = 2", alarm_id)
            assert delivered
            audit = await eventually(conn, "SELECT detail FROM audit_log WHERE action ="
                                     " 'alarm.escalated' AND target = %s", f"alarm:{alarm_id}")
    assert policy == "with_order"
    assert (ack_due - raised).total_seconds() == 2.0  # the procedure's acknowledge time
    assert all(r.signature_ok for r in srv.received)
    assert sms[0].params["PhoneNumbers"] == "13800000012"  # the duty room's next person
    assert texts[0].params["PhoneNumberSet"] == ["+8613800000012"]
    assert call[0].params["CalledNumber"] == "13800000012"
    assert "升级" in sms[0].params["TemplateParam"]
    assert sms[0].at >= ack_due and call[0].at_mono - sms[0].at_mono >= 1.5
    assert escalated.alarm_id == alarm_id and escalated.detail["person"] == "op-2"
    assert escalated.event_id is not None  # it came through the outbox relay
    assert audit[0][0]["level"] == 1
    print(f"\nFIGURE sla_expiry_to_sms_s={(sms[0].at - ack_due).total_seconds():.3f}"
          f" sms_to_call_s={call[0].at_mono - sms[0].at_mono:.3f} (voice_after 2 s)")


def escalated(level: int) -> Callable[[AlarmEvent], bool]:
    return lambda m: m.event == "alarm.escalated" and m.detail.get("level") == level


async def test_a_gateway_offline_alarm_follows_its_own_policy_and_an_ack_drops_the_call(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in KEYS_ENV.items():
        monkeypatch.setenv(k, v)
    policy = {"acknowledge": {"high": "1s"},
              "with_order": {"levels": [{"after": "10m", "notify": "next"}]},
              "without_order": {"levels": [{"after": "0s", "notify": "next"},
                                           {"after": "1s", "notify": "supervisor"}],
                                "renotify_every": "1h"}}
    async with provider_server(("LTAI-test", "ali-secret"), ("AKID-test", "tc-secret")) as srv:
        procs = write_files(tmp_path, site_id, srv.url(), policy, "10m")
        async with rules_running(tmp_path, procs, database_url, mqtt_url, mqtt_protocol), \
                MqttClient(mqtt_url, f"pub-{site_id}", protocol=mqtt_protocol) as pub, \
                await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await pub.wait_connected(10)
            await pub.publish(topics.gateway_status(site_id, "gw-a"), encode(GatewayStatus(
                ts=datetime.now(UTC), state="offline", session="s1")), qos=1, timeout_s=5)
            levels = [await inbox.wait_for(AlarmEvent, TopicKind.ALARMS, None, escalated(n))
                      for n in (1, 2)]
            sms = await srv.wait("SendSms", 2)
            alarm_id = levels[0].alarm_id
            assert alarm_id is not None
            (wo, t_policy), = await (await conn.execute(
                "SELECT a.work_order_id, t.policy FROM alarms a JOIN alarm_timers t"
                " ON t.alarm_id = a.id WHERE a.id = %s", (alarm_id,))).fetchall()
            await alarm_store.acknowledge(conn, alarm_id, "op-1", datetime.now(UTC))
            # the calls were due in 10 minutes: the acknowledgement drops them when they fall
            # due; make them due now and see them cancelled, not placed
            await conn.execute("UPDATE notification_deliveries SET next_attempt_at = now()"
                               " WHERE alarm_id = %s AND channel = 'ali-call'", (alarm_id,))
            cancelled = await eventually(
                conn, "SELECT count(*) FROM notification_deliveries WHERE alarm_id = %s AND"
                      " channel = 'ali-call' AND state = 'cancelled' HAVING count(*) = 2",
                alarm_id)
            (timer_due,), = await (await conn.execute(
                "SELECT due_at FROM alarm_timers WHERE alarm_id = %s", (alarm_id,))).fetchall()
    assert wo is None and t_policy == "without_order"
    assert levels[0].alarm_type == "gateway_offline"
    assert [e.detail["person"] for e in levels] == ["op-2", "boss"]
    assert [e.detail["notify"] for e in levels] == ["next", "supervisor"]
    assert sorted(r.params["PhoneNumbers"] for r in sms[:2]) == ["13800000012", "13800000013"]
    assert cancelled and not srv.of("SingleCallByTts")
    assert timer_due is None or timer_due > datetime.now(UTC)
