"""The gateway against real peers: Modbus TCP devices served by the simulators' server
(values encoded with pymodbus' own codec), the BACnet fire panel served by the simulators'
bacpypes3 device, and the real broker. A subscriber checks what the contract promises."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from pathlib import Path

import pytest

from facility.messages import Birth, DeviceStatus, GatewayStatus, Telemetry
from facility.mqtt import MqttClient
from facility.ports import free_port
from facility.profiles import load_profile
from facility.site import Site
from facility.topics import TopicKind
from gateway.counters import GatewayCounters
from gateway.service import run_gateway
from simulators.bacnet_server import BacnetDeviceServer
from simulators.modbus_server import ModbusDeviceServer
from tests.integration.gateway_support import ROOT, Inbox, until, write_site

ELEVATOR = {
    "moving": False, "door_closed": True, "door_zone": False, "alarm_button": True,
    "car_floor": -1, "direction": 2, "passengers": 3, "load_kg": 240, "service_mode": 0,
    "fault_code": 17, "speed_mps": 1.5, "run_count": 123456,
}


async def start_gateway(site: Site, mqtt_url: str, protocol: str, counters: GatewayCounters
                        ) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(run_gateway(site, "gw-t", mqtt_url, mqtt_protocol=protocol,
                                           ready=ready, counters=counters,
                                           state_dir=site.path.parent / "state"))
    async with asyncio.timeout(10):
        await ready.wait()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def with_ghost_profile(tmp_path: Path) -> Path:
    """An elevator profile with one more point, which the served device does not have."""
    pdir = tmp_path / "profiles"
    pdir.mkdir()
    for f in (ROOT / "profiles").glob("*.yaml"):
        (pdir / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    text = (ROOT / "profiles" / "elevator.yaml").read_text(encoding="utf-8")
    text = text.replace("profile: elevator\n", "profile: elevator_plus\n")
    text += "  - {name: ghost, table: holding, address: 12, type: uint16}\n"
    (pdir / "elevator_plus.yaml").write_text(text, encoding="utf-8")
    return pdir


async def test_modbus_telemetry_offline_device_and_gateway_status(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    live, dead = free_port(), free_port()
    site = write_site(tmp_path, site_id, (
        f"      - {{id: lift, type: elevator, profile: elevator_plus, poll_interval_s: 0.2,"
        f" timeout_s: 0.5, address: {{protocol: modbus, port: {live}}}}}\n"
        f"      - {{id: pumps, type: pump_set, profile: pump_set, poll_interval_s: 0.2,"
        f" timeout_s: 0.5, address: {{protocol: modbus, port: {dead}}}}}\n"
    ), profiles_dir=with_ghost_profile(tmp_path))
    served = dataclasses.replace(site.devices["lift"],
                                 profile=load_profile(ROOT / "profiles" / "elevator.yaml"))
    counters = GatewayCounters()
    # no gap filling: a request spanning an unused register is refused with code 2
    async with ModbusDeviceServer(served, ELEVATOR, fill_gaps=False) as server:
        gateway = await start_gateway(site, mqtt_url, mqtt_protocol, counters)
        try:
            online = await inbox.wait_for(GatewayStatus, TopicKind.GATEWAY_STATUS, None)
            assert online.state == "online" and len(online.session) == 32

            first = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "lift")
            assert first.points == ELEVATOR  # every point, decoded, one bad register aside
            assert first.quality["ghost"] == "bad" and "ghost" not in first.points
            assert all(first.quality[n] == "good" for n in ELEVATOR)
            assert first.session == online.session and not first.historical

            birth = await inbox.wait_for(Birth, TopicKind.BIRTH, "lift")
            assert birth.session == online.session and birth.profile == "elevator_plus"
            assert birth.building == "a" and birth.device_type == "elevator"
            assert birth.points["speed_mps"].type == "float"
            assert birth.points["speed_mps"].unit == "m/s"
            assert birth.points["direction"].enum == {0: "stopped", 1: "up", 2: "down"}
            assert birth.values == ELEVATOR

            offline = await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS, "pumps")
            assert offline.state == "offline" and "after 2 tries" in offline.reason

            # on change: only the changed point, newer seq, same session
            await server.publish({**ELEVATOR, "car_floor": 5, "speed_mps": 0.0})
            change = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "lift",
                                          lambda t: t.points.get("car_floor") == 5)
            # car_floor is a fast point; speed_mps (normal class) comes with it or a few
            # ticks later, and nothing that did not change comes along
            assert set(change.points) <= {"car_floor", "speed_mps"}
            assert change.seq > first.seq and change.session == online.session
            speed = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "lift",
                                         lambda t: t.points.get("speed_mps") == 0.0)
            assert set(speed.points) <= {"car_floor", "speed_mps"}
            # the healthy device kept publishing while the other was offline
            assert counters.failures["transport"] >= 2
            assert inbox.all_of(Telemetry, TopicKind.TELEMETRY, "pumps") == []
        finally:
            await stop(gateway)

    gone = await inbox.wait_for(GatewayStatus, TopicKind.GATEWAY_STATUS, None,
                                lambda s: s.state == "offline")
    assert gone.session == online.session
    retained = await _retained(mqtt_url, mqtt_protocol, site_id)
    assert retained["gw-t/status"]["state"] == "offline"
    assert retained["gw-t/pumps/status"]["state"] == "offline"
    assert retained["gw-t/lift/status"]["state"] == "online"


async def test_device_with_no_server_goes_offline_then_recovers(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    port = free_port()
    site = write_site(tmp_path, site_id, (
        f"      - {{id: lift, type: elevator, profile: elevator, poll_interval_s: 0.1,"
        f" timeout_s: 0.5, address: {{protocol: modbus, port: {port}}}}}\n"
    ))
    gateway = await start_gateway(site, mqtt_url, mqtt_protocol, GatewayCounters())
    try:
        down = await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS, "lift")
        assert down.state == "offline"
        async with ModbusDeviceServer(site.devices["lift"], ELEVATOR):
            up = await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS, "lift",
                                      lambda s: s.state == "online")
            assert up.reason.startswith("recovered after")
            t = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "lift")
            assert t.points["run_count"] == 123456
    finally:
        await stop(gateway)


async def test_bacnet_fire_panel(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    site = write_site(tmp_path, site_id, (
        f"      - {{id: panel, type: fire_panel, profile: firepanel, poll_interval_s: 0.2,"
        f" timeout_s: 1, address: {{protocol: bacnet, port: {port},"
        f" device_instance: 1001}}}}\n"
    ))
    values = {p.name: False for p in site.devices["panel"].profile.points}
    values.update(zone_3_alarm=True, zone_2_trouble=True, panel_state=2)
    counters = GatewayCounters()
    async with BacnetDeviceServer(site.devices["panel"], values) as panel:
        gateway = await start_gateway(site, mqtt_url, mqtt_protocol, counters)
        try:
            t = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "panel")
            assert t.points == values
            assert set(t.quality.values()) == {"good"}
            # the device supports COV: every object is subscribed and notified once at least
            await until(lambda: counters.cov_notifications >= len(values), 10)
            notified_before = counters.cov_notifications
            await panel.publish({"zone_3_alarm": False, "panel_state": 1})
            await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "panel",
                                 lambda m: m.points.get("zone_3_alarm") is False)
            change = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "panel",
                                          lambda m: m.points.get("panel_state") == 1)
            assert set(change.points) <= {"zone_3_alarm", "panel_state"}
            # values came by notification; each poll asks the device one thing only (the
            # liveness probe; the integrity poll, one RPM, is a minute away)
            assert counters.cov_notifications >= notified_before + 2
            assert counters.device("panel").requests == 1
        finally:
            await stop(gateway)


async def _retained(mqtt_url: str, protocol: str, site_id: str) -> dict[str, dict[str, object]]:
    """What a newcomer sees: the retained messages under the site, by topic tail."""
    client = MqttClient(mqtt_url, f"late-{site_id}", protocol=protocol)
    await client.start()
    await client.wait_connected(5)
    await client.subscribe(f"facility/v1/{site_id}/#")
    out: dict[str, dict[str, object]] = {}
    try:
        async with asyncio.timeout(1.0):
            async for m in client.messages():
                if m.retain:
                    out[m.topic.split("/", 3)[3]] = json.loads(m.payload)
    except TimeoutError:
        pass
    finally:
        await client.close()
    return out
