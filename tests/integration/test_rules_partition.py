"""A site split between two rules processes by gateway, against the real broker and
database: each evaluates only its own gateways' devices, and a partition's persistent session
keeps the messages that arrive while its process is down."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from facility import topics
from facility.messages import Telemetry, encode
from facility.mqtt import MqttClient
from facility.site import Site, load_site
from facility.topics import TopicKind
from rules.handling import RulesService
from rules.service import run_rules
from tests.integration.test_rules_service import (
    FREE,
    PROCEDURES,
    ROOT,
    TRAPPED,
    all_handled,
    eventually,
    publisher,
    query,
)


def two_buildings(tmp_path: Path, site_id: str) -> Site:
    def lift(name: str, port: int) -> dict[str, Any]:
        return {"id": f"{site_id}-{name}", "type": "elevator", "profile": "elevator",
                "address": {"protocol": "modbus", "port": port}}

    raw = {"site": site_id, "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw-a"}, {"id": "gw-b"}],
           "buildings": [{"id": "a", "gateway": "gw-a", "devices": [lift("a-lift", 15001)]},
                         {"id": "b", "gateway": "gw-b", "devices": [lift("b-lift", 15002)]}],
           "rules": {"entrapment": {"on_delay_s": 0.3}}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_site(path)


class Part:
    """One rules process (a task here) for some gateways of the site."""

    def __init__(self, site: Site, database_url: str, mqtt_url: str, protocol: str,
                 gateways: list[str]) -> None:
        self.site, self.database_url, self.mqtt_url = site, database_url, mqtt_url
        self.protocol, self.gateways = protocol, gateways
        self.task: asyncio.Task[None] | None = None
        self.services: list[RulesService] = []

    @property
    def service(self) -> RulesService:
        """The service of the latest start."""
        return self.services[-1]

    async def start(self) -> None:
        ready = asyncio.Event()
        self.task = asyncio.create_task(run_rules(
            self.site, self.database_url, self.mqtt_url, procedures_dir=PROCEDURES,
            mqtt_protocol=self.protocol, gateways=self.gateways, dispatch=False,
            ready=ready, tick_s=0.1, on_service=self.services.append))
        waiter = asyncio.create_task(ready.wait())
        async with asyncio.timeout(20):
            await asyncio.wait({self.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            self.task.result()  # raises what made it fail at start

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Feed:
    def __init__(self, pub: MqttClient, site_id: str) -> None:
        self.pub, self.site_id, self.seq = pub, site_id, 0

    async def send(self, gateway: str, building: str, points: dict[str, Any]) -> None:
        self.seq += 1
        msg = Telemetry(ts=datetime.now(UTC), seq=self.seq, session="s1", points=points)
        device = f"{self.site_id}-{building}-lift"
        await self.pub.publish(
            topics.device_topic(TopicKind.TELEMETRY, self.site_id, gateway, device),
            encode(msg), qos=1, timeout_s=5)


async def test_each_part_evaluates_only_its_gateways_and_keeps_what_arrives_while_down(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = two_buildings(tmp_path, site_id)
    part_a = Part(site, database_url, mqtt_url, mqtt_protocol, ["gw-a"])
    part_b = Part(site, database_url, mqtt_url, mqtt_protocol, ["gw-b"])
    alarms = "SELECT source FROM alarms WHERE alarm_type = 'entrapment' ORDER BY source"
    async with publisher(mqtt_url, mqtt_protocol) as pub:
        feed = Feed(pub, site_id)
        try:
            await part_a.start()
            await part_b.start()
            await part_b.stop()  # its session stays with the broker
            await feed.send("gw-b", "b", TRAPPED)  # kept for part B, never seen by part A
            await feed.send("gw-a", "a", TRAPPED)
            rows = await eventually(database_url, alarms)
            assert rows == [(f"{site_id}-a-lift",)]
            # a sentinel for part A after building B's message: once A has handled it, A
            # has had every message it will ever get, and none was building B's
            await feed.send("gw-a", "a", TRAPPED)
            await all_handled([part_a.service], 2)
            assert part_a.service.messages == 2  # its two, never building B's
            assert await query(database_url, alarms) == rows

            await part_b.start()  # the broker delivers what arrived while it was down
            rows = await eventually(database_url, alarms, check=lambda r: len(r) == 2)
            assert rows == [(f"{site_id}-a-lift",), (f"{site_id}-b-lift",)]
            orders = await query(database_url, "SELECT source FROM work_orders ORDER BY source")
            assert orders == rows  # one order each, opened by the part that owns the lift
            await feed.send("gw-b", "b", FREE)
            await eventually(database_url, "SELECT source FROM alarms WHERE NOT active")
            assert await query(database_url, "SELECT source FROM alarms WHERE NOT active") == [
                (f"{site_id}-b-lift",)]
        finally:
            await part_a.stop()
            await part_b.stop()
    states = await query(database_url, "SELECT DISTINCT source FROM rule_state ORDER BY 1")
    assert states == [(f"{site_id}-a-lift",), (f"{site_id}-b-lift",)]
