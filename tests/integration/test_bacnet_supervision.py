"""A BACnet panel that reports its own condition, and one that refuses COV, against the
gateway and the real broker (the simulators' BACnet server playing its `Behaviour`, COV on
as by default): a point whose object is in fault, out of service or unreliable arrives bad
with its flags, by request and by COV notification, and is good again once it recovers; an
object refusing SubscribeCOV is polled, its refusal logged once however often it is tried."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from facility.messages import Telemetry
from facility.ports import free_port
from facility.site import Site
from facility.topics import TopicKind
from gateway.counters import GatewayCounters
from gateway.service import run_gateway
from simulators.bacnet_server import BacnetDeviceServer
from simulators.misbehaviour import Behaviour
from tests.integration.gateway_support import Inbox, until, write_site
from tests.integration.test_gateway import stop


def panel_site(tmp_path: Path, site_id: str, options: str = "") -> Site:
    port = free_port(socket.SOCK_DGRAM)
    return write_site(tmp_path, site_id, (
        "      - {id: p, type: fire_panel, profile: firepanel, poll_interval_s: 0.2,"
        f" timeout_s: 1, address: {{protocol: bacnet, port: {port}, device_instance: 1001}}}}\n"),
        report_period_s=2, gateway_options=options)


def quiet_panel(site: Site) -> dict[str, bool | int]:
    values: dict[str, bool | int] = {p.name: False for p in site.devices["p"].profile.points}
    values["panel_state"] = 1
    return values


def gateway(site: Site, mqtt_url: str, mqtt_protocol: str, tmp_path: Path,
            counters: GatewayCounters) -> asyncio.Task[None]:
    return asyncio.create_task(run_gateway(site, "gw-t", mqtt_url, mqtt_protocol=mqtt_protocol,
                                           counters=counters, state_dir=tmp_path / "state"))


async def test_fault_out_of_service_and_unreliable_points_arrive_bad_with_their_flags(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    site = panel_site(tmp_path, site_id)
    start = Behaviour.model_validate({"points": {
        "zone_1_trouble": {"reliability": "open-loop"},
        "zone_2_alarm": {"out_of_service": True}}})
    counters = GatewayCounters()
    async with BacnetDeviceServer(site.devices["p"], quiet_panel(site), behaviour=start) as sim:
        task = gateway(site, mqtt_url, mqtt_protocol, tmp_path, counters)
        try:
            first = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "p")  # read by request
            assert first.quality["zone_1_trouble"] == first.quality["zone_2_alarm"] == "bad"
            assert "zone_1_trouble" not in first.points and "zone_2_alarm" not in first.points
            assert first.flags == {"zone_1_trouble": "fault,open-loop",
                                   "zone_2_alarm": "out-of-service"}
            assert {q for n, q in first.quality.items()
                    if n not in first.flags} == {"good"}
            await until(lambda: counters.cov_notifications >= 13)  # every object followed
            # now by COV notification: one recovers, another goes into fault
            sim.set_behaviour(Behaviour.model_validate({"points": {
                "zone_2_alarm": {"out_of_service": True},
                "zone_3_alarm": {"reliability": "shorted-loop"}}}))
            back = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "p",
                                        lambda t: t.quality.get("zone_1_trouble") == "good")
            assert back.points["zone_1_trouble"] is False
            gone = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "p",
                                        lambda t: t.quality.get("zone_3_alarm") == "bad")
            assert "zone_3_alarm" not in gone.points
            assert (gone.flags or {}).get("zone_3_alarm", "").startswith("fault")
            assert counters.cov_failures == 0
        finally:
            await stop(task)


async def test_a_refused_cov_subscription_falls_back_to_polling_and_is_logged_once(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    # integrity poll (and so the first retry) every second: several refusals in the test
    site = panel_site(tmp_path, site_id, ", integrity_poll_s: 1")
    refuse = Behaviour.model_validate({"cov_refused": ["zone_1_alarm"]})
    counters = GatewayCounters()
    async with BacnetDeviceServer(site.devices["p"], quiet_panel(site), behaviour=refuse) as sim:
        task = gateway(site, mqtt_url, mqtt_protocol, tmp_path, counters)
        try:
            await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "p")
            await until(lambda: counters.cov_failures >= 3 and counters.cov_notifications >= 12)
            await sim.publish({"zone_1_alarm": True})  # no notification for it: polled
            seen = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, "p",
                                        lambda t: t.points.get("zone_1_alarm") is True)
            assert seen.quality["zone_1_alarm"] == "good"
            refusals = [r for r in caplog.records
                        if "COV subscription of zone_1_alarm" in r.getMessage()]
            assert len(refusals) == 1, [r.getMessage() for r in refusals]
            assert refusals[0].levelno == logging.WARNING
            assert "cov-subscription-failed" in refusals[0].getMessage()
            assert "polling it" in refusals[0].getMessage()
        finally:
            await stop(task)
