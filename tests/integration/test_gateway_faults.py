"""One gateway, devices that misbehave next to a healthy one, real peers (the simulators'
Modbus and BACnet servers playing their `Behaviour`) and the real broker: the healthy
device's cycle is unaffected by a slow and a dead neighbour; a busy device is retried; a
BACnet device without ReadPropertyMultiple or segmentation is still read whole; the
metrics endpoint tells all of it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from facility.messages import DeviceStatus, Telemetry
from facility.ports import free_port
from facility.topics import TopicKind
from gateway.counters import GatewayCounters
from gateway.metrics import MetricsServer
from gateway.service import run_gateway
from simulators.bacnet_server import BacnetDeviceServer
from simulators.misbehaviour import Behaviour
from simulators.modbus_server import ModbusDeviceServer
from tests.integration.gateway_support import Inbox, until, write_site
from tests.integration.test_gateway import ELEVATOR, stop

DEVICE = ("      - {{id: {id}, type: elevator, profile: elevator, poll_interval_s: 0.2,"
          " timeout_s: {timeout}, address: {{protocol: modbus, port: {port}}}}}\n")


def scrape(port: int) -> dict[str, float]:
    """Every sample as ``name{label="value",...}`` (labels in name order) -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}":
            s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_slow_and_dead_devices_do_not_delay_a_healthy_one(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    ports = {name: free_port() for name in ("healthy", "slow", "dead", "busy")}
    site = write_site(tmp_path, site_id, "".join(
        DEVICE.format(id=name, port=port, timeout=2.0 if name == "slow" else 0.3)
        for name, port in ports.items()))
    behaviours = {
        "healthy": Behaviour(),
        "slow": Behaviour.model_validate({"delay": 1.5}),  # every poll overruns its tick
        "dead": Behaviour(mute=True),  # accepts, never answers: every poll times out
        "busy": Behaviour(exception_rate=0.3, exception_code=6),
    }
    servers = [ModbusDeviceServer(site.devices[n], ELEVATOR, behaviour=b)
               for n, b in behaviours.items()]
    counters = GatewayCounters()
    metrics: list[MetricsServer] = []
    for s in servers:
        await s.start()
    try:
        ready = asyncio.Event()
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", mqtt_url, mqtt_protocol=mqtt_protocol, ready=ready,
            counters=counters, state_dir=tmp_path / "state", metrics_port=0, metrics=metrics))
        try:
            await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS, "dead",
                                 lambda s: s.state == "offline")
            # the order of events, not the machine's speed: while one poll of the slow
            # device is held by its server, the healthy device is polled again and again
            slow_server, healthy_server = servers[1], servers[0]
            await until(lambda: slow_server.held > 0, 30)
            held_at, healthy_at = slow_server.requests, healthy_server.requests
            await until(lambda: healthy_server.requests >= healthy_at + 3, 30)
            assert slow_server.held > 0 and slow_server.requests == held_at  # the same poll
            await until(lambda: counters.device("slow").polls >= 3, 30)
            await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "busy")
            healthy, slow = counters.device("healthy"), counters.device("slow")
            dead, busy = counters.device("dead"), counters.device("busy")
            assert healthy.failures == 0
            # a slow poll spans eight ticks: the healthy device polls at least twice as often
            assert healthy.polls >= 2 * slow.polls
            # (a poll counts when it starts, its failure or overrun when it ends)
            assert slow.overruns >= slow.polls - 2 and slow.failures == 0
            assert dead.failures >= dead.polls - 1 and dead.overruns > 0
            assert counters.failures["timeout"] >= dead.failures
            assert counters.busy_retries > 0 and busy.failures * 4 < busy.polls
            assert "protocol" not in counters.failures or counters.failures["protocol"] < 5

            m = await asyncio.to_thread(scrape, metrics[0].port)
            g = 'gateway="gw-t"'
            assert m[f'gateway_device_overruns_total{{device="slow",{g}}}'] >= slow.overruns
            assert m[f'gateway_device_polls_total{{device="healthy",{g}}}'] >= healthy.polls
            assert m[f'gateway_poll_failures_total{{class="timeout",{g}}}'] >= 1
            assert m[f"gateway_busy_retries_total{{{g}}}"] >= 1
            assert m[f"gateway_queue_depth{{{g}}}"] == 0
            assert m[f"gateway_requests_per_cycle{{{g}}}"] >= 3
        finally:
            await stop(gateway)
    finally:
        for s in servers:
            await s.close()


async def test_bacnet_device_without_rpm_or_segmentation(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    no_rpm, small = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    site = write_site(tmp_path, site_id, "".join(
        f"      - {{id: {name}, type: fire_panel, profile: firepanel, poll_interval_s: 0.2,"
        f" timeout_s: 1, address: {{protocol: bacnet, port: {port},"
        f" device_instance: {1000 + i}}}}}\n"
        for i, (name, port) in enumerate((("norpm", no_rpm), ("small", small)))),
        gateway_options=", cov_lifetime_s: 0")  # every poll reads by request
    values = {p.name: False for p in site.devices["norpm"].profile.points}
    values.update(zone_1_alarm=True, zone_4_supervisory=True, panel_state=3)
    counters = GatewayCounters()
    async with (
        BacnetDeviceServer(site.devices["norpm"], values,
                           behaviour=Behaviour(read_property_multiple=False)),
        BacnetDeviceServer(site.devices["small"], values,
                           behaviour=Behaviour(segmentation=False, max_apdu=128)),
    ):
        ready = asyncio.Event()
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", mqtt_url, mqtt_protocol=mqtt_protocol, ready=ready,
            counters=counters, state_dir=tmp_path / "state"))
        try:
            for name in ("norpm", "small"):
                t = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, name)
                assert t.points == values and set(t.quality.values()) == {"good"}
            await until(lambda: min(counters.device(n).polls for n in ("norpm", "small")) >= 3)
            # two ReadProperty per due object (presentValue and statusFlags; panel_state is
            # normal class), no RPM attempt
            assert counters.device("norpm").requests in (2 * len(values) - 2, 2 * len(values))
            # 12 or 13 objects with their flags and reliability, 2 a request
            assert 6 <= counters.device("small").requests <= 8
            assert counters.cov_notifications == 0
        finally:
            await stop(gateway)
