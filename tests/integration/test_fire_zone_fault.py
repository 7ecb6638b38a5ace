"""A fire-alarm zone in fault is not silent, through the real chain: the simulators' BACnet
fire panel (its zone object's reliability set to open-loop, as `simulators.misbehaviour` plays
it) -> the gateway over BACnet/IP on loopback (COV on, as by default) -> the test mosquitto ->
ingest (latest_values keeps the panel's words beside the bad quality) and rules (the built-in
``fire_zone_fault`` raises a high-priority fire-system trouble naming the zone and its flags,
with its fire_system_fault work order; the alarm follows the panel's words: the fault flag by
COV first, the reliability open-loop once read by request) -> the zone back to normal -> the
alarm clears and the flags are gone. The delays are shortened in the site file (their logic,
and that a zone never reported raises nothing, are in tests/unit/rules/test_zone_fault.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from facility.ports import free_port
from facility.site import Site, load_site
from gateway.counters import GatewayCounters
from gateway.service import run_gateway
from rules.service import run_rules
from simulators.bacnet_server import BacnetDeviceServer
from simulators.misbehaviour import Behaviour
from tests.integration.ingest_support import eventually, query, rows, running_ingest
from tests.integration.test_bacnet_supervision import quiet_panel
from tests.integration.test_gateway import stop
from tests.integration.test_rules_service import PROCEDURES, ROOT

pytestmark = pytest.mark.timeout(120)

ZONE_FLAGS = ("SELECT v.quality, v.flags FROM latest_values v JOIN points p ON p.id = v.point_id"
              " JOIN devices d ON d.id = p.device_id WHERE d.name = 'p' AND p.name = %s")
ALARMS = ("SELECT alarm_type, priority, state, active, message, detail FROM alarms"
          " WHERE source = 'p' ORDER BY id")
ORDERS = ("SELECT w.procedure_id, w.fault, w.priority, a.alarm_type FROM work_orders w"
          " JOIN alarms a ON a.id = w.alarm_id WHERE w.source = 'p'")


@contextlib.asynccontextmanager
async def rules_running(site: Site, database_url: str, mqtt_url: str, mqtt_protocol: str
                        ) -> AsyncIterator[None]:
    """The rules service in a task, subscribed, until the block ends."""
    ready = asyncio.Event()
    task = asyncio.create_task(run_rules(
        site, database_url, mqtt_url, procedures_dir=PROCEDURES, mqtt_protocol=mqtt_protocol,
        ready=ready, tick_s=0.1))
    waiter = asyncio.create_task(ready.wait())
    try:
        async with asyncio.timeout(20):
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what made the service fail at start
        yield
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def panel_site(tmp_path: Path, site_id: str) -> Site:
    raw: dict[str, Any] = {
        "site": site_id,
        "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw-t", "report_period_s": 2, "offline_after_failures": 3,
                      "integrity_poll_s": 1}],
        "buildings": [{"id": "a", "gateway": "gw-t", "devices": [
            {"id": "p", "type": "fire_panel", "profile": "firepanel", "poll_interval_s": 0.2,
             "timeout_s": 1, "address": {"protocol": "bacnet",
                                         "port": free_port(socket.SOCK_DGRAM),
                                         "device_instance": 1001}}]}],
        "rules": {"fire_zone_fault": {"on_delay_s": 1, "off_delay_s": 2}},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_site(path)


async def test_a_zone_in_fault_raises_a_fire_system_trouble_with_its_order_and_clears(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = panel_site(tmp_path, site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters,
                rules_running(site, database_url, mqtt_url, mqtt_protocol),
                BacnetDeviceServer(site.devices["p"], quiet_panel(site)) as sim):
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", mqtt_url, mqtt_protocol=mqtt_protocol, counters=GatewayCounters(),
            state_dir=tmp_path / "state"))
        try:
            # every zone good and stored: no fault alarm for a panel that reports all is well
            await eventually(database_url, rows(ZONE_FLAGS, "zone_2_alarm"),
                             lambda r: r == [(0, None)], timeout_s=30)
            assert await query(database_url, rows(ALARMS)) == []
            sim.set_behaviour(Behaviour.model_validate(
                {"points": {"zone_2_alarm": {"reliability": "open-loop"}}}))
            # a COV notification carries the fault flag; the reliability's own word comes
            # with the next read by request (the integrity poll)
            await eventually(database_url, rows(ZONE_FLAGS, "zone_2_alarm"),
                             lambda r: r[0][0] == 1 and (r[0][1] or "").startswith("fault"),
                             timeout_s=20)
            [alarm] = await eventually(database_url, rows(ALARMS), lambda r: len(r) >= 1,
                                       timeout_s=20)
            alarm_type, priority, state, active, message, detail = alarm
            assert (alarm_type, priority, state, active) == (
                "fire_zone_fault", "high", "unack", True)
            assert "(zone_2_alarm: fault" in message
            assert detail["points"] == ["zone_2_alarm"]
            assert detail["flags"]["zone_2_alarm"].startswith("fault")
            # once read by request, the panel's own words are stored and named by the alarm
            await eventually(database_url, rows(ZONE_FLAGS, "zone_2_alarm"),
                             lambda r: r == [(1, "fault,open-loop")], timeout_s=20)
            await eventually(database_url, rows(ALARMS), lambda r: len(r) == 1 and r[0][4]
                             .endswith("(zone_2_alarm: fault,open-loop)"), timeout_s=20)
            [order] = await eventually(database_url, rows(ORDERS), lambda r: len(r) == 1)
            assert order == ("fire_system_fault", "fire_zone_fault", "high", "fire_zone_fault")

            sim.set_behaviour(Behaviour())  # the loop repaired
            await eventually(database_url, rows(ZONE_FLAGS, "zone_2_alarm"),
                             lambda r: r == [(0, None)], timeout_s=20)
            [cleared] = await eventually(database_url, rows(ALARMS),
                                         lambda r: len(r) == 1 and not r[0][3], timeout_s=20)
            assert cleared[:4] == ("fire_zone_fault", "high", "rtn_unack", False)
            assert counters.dead_letters == 0
        finally:
            await stop(gateway)
