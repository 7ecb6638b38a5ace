"""A gateway's liveness from its heartbeats, through the real chain over MQTT 3.1.1
(`facility simulate` -> `facility gateway` -> a private mosquitto -> `facility rules` ->
PostgreSQL, each its own process): the gateway repeats its online status every
``heartbeat_s``; then the broker and the gateway are both SIGKILLed, as when a clustered
broker's node dies with the gateway's Will in it, and the broker comes back without the
Will. The rules still raise gateway_offline, from the silence (their log says so), and
clear it when a new gateway session comes online."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from paho.mqtt import subscribe

from facility.ports import free_port
from stack.embedded.broker import Broker
from tests.integration.chain_support import ROOT, chain, poll, query

HEARTBEAT_S, MISSES = 1.0, 3


def write_site(tmp_path: Path, site_id: str) -> Path:
    site = {
        "site": site_id,
        "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw-t", "heartbeat_s": HEARTBEAT_S,
                      "offline_after_heartbeats": MISSES}],
        "buildings": [{"id": "a", "gateway": "gw-t", "devices": [
            {"id": "lift", "type": "elevator", "profile": "elevator",
             "address": {"protocol": "modbus", "port": free_port()}}]}],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def gateway_offline(database_url: str, site_id: str) -> list[dict[str, object]]:
    return query(database_url, "SELECT active FROM alarms WHERE site_id = %s AND source ="
                 " 'gw-t' AND alarm_type = 'gateway_offline' ORDER BY id", site_id)


def test_a_gateway_whose_will_died_with_the_broker_is_judged_offline_by_its_silence(
    tmp_path: Path, database_url: str, site_id: str,
) -> None:
    broker = Broker(tmp_path / "broker", free_port())
    broker.start()
    try:
        site = write_site(tmp_path, site_id)
        with chain(tmp_path, database_url=database_url, mqtt_url=broker.url,
                   mqtt_protocol="3.1.1", site=site) as c:
            c.start("rules", "rules", "--procedures", str(ROOT / "procedures"),
                    ready="rules subscribed to")
            c.start("simulate", "simulate", ready="simulators of site")
            c.start("gw", "gateway", "--gateway", "gw-t", "--state-dir", str(tmp_path / "s"),
                    ready="gateway gw-t online")
            beats: list[Any] = subscribe.simple(  # type: ignore[no-untyped-call]
                f"facility/v1/{site_id}/gw-t/status", msg_count=3, hostname="127.0.0.1",
                port=broker.port, qos=1)
            sessions = {json.loads(m.payload)["session"] for m in beats}
            states = {json.loads(m.payload)["state"] for m in beats}
            assert (len(sessions), states) == (1, {"online"})  # a repeat, not a new session
            assert gateway_offline(database_url, site_id) == []

            assert broker.process is not None
            broker.process.kill()  # the node dies with the gateway's Will in it
            broker.process.wait()
            c.kill("gw")
            broker.start()
            poll(lambda: gateway_offline(database_url, site_id) == [{"active": True}],
                 60, "gateway_offline raised from the silence")
            assert "gateway gw-t silent for 3 heartbeats" in c.services["rules"].text()

            c.start("gw2", "gateway", "--gateway", "gw-t", "--state-dir",
                    str(tmp_path / "s"), ready="gateway gw-t online")
            poll(lambda: gateway_offline(database_url, site_id) == [{"active": False}],
                 60, "gateway_offline cleared by the new session's status")
    finally:
        broker.stop()
