"""Modbus RTU lines against the simulators' RTU lines (pymodbus' RTU framer on both sides,
the line's baud rate played by the simulator): a serial device server (RTU over TCP) with
one dead unit among healthy ones, the same server dropping every connection, and a serial
line on a pseudo-terminal pair, also read by mbpoll (an independent Modbus RTU master)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml

from facility.messages import DeviceStatus, Telemetry
from facility.ports import free_port
from facility.site import Site, load_site
from facility.topics import TopicKind
from gateway.counters import GatewayCounters
from gateway.discover import Targets, run_discover
from gateway.service import run_gateway
from simulators.modbus_server import ModbusDeviceServer
from simulators.runner import run_simulators
from tests.integration.gateway_support import ROOT, Inbox, until, write_site
from tests.integration.test_gateway import ELEVATOR

pytestmark = pytest.mark.timeout(180)


def rtu_site(path: Path, site_id: str, line: dict[str, Any], units: list[int]) -> Site:
    devices = [{"id": f"sg-{u}", "type": "switchgear", "profile": "switchgear",
                "poll_interval_s": 0.5, "timeout_s": 0.5,
                "address": {"protocol": "modbus-rtu", "line": line["id"], "unit": u}}
               for u in units]
    raw = {"site": site_id, "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw-t", "offline_after_failures": 2, "lines": [line]}],
           "buildings": [{"id": "a", "gateway": "gw-t", "devices": devices}]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_site(path)


@asynccontextmanager
async def running(coro: Any, ready: asyncio.Event) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro)
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set()
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def simulate(site: Site) -> Any:
    ready = asyncio.Event()
    return running(run_simulators(site, ready=ready, tick_s=0.1), ready)


def gateway(site: Site, mqtt_url: str, protocol: str, counters: GatewayCounters) -> Any:
    ready = asyncio.Event()
    return running(run_gateway(site, "gw-t", mqtt_url, mqtt_protocol=protocol, ready=ready,
                               counters=counters, state_dir=site.path.parent / "state"), ready)


def server_line(port: int, **extra: Any) -> dict[str, Any]:
    return {"id": "rs485-1", "server": f"127.0.0.1:{port}", "baudrate": 19200,
            "timeout_s": 0.3, **extra}


async def test_a_dead_unit_costs_the_line_only_its_own_timeouts(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    # a timeout a loaded machine's answer never reaches (0.3 s did: a live unit timed out
    # now and then); the dead unit is asked rarely, so it costs little all the same
    line = server_line(free_port(), timeout_s=1.5)
    (tmp_path / "sim").mkdir()
    served = rtu_site(tmp_path / "sim" / "site.yaml", site_id, line, [1, 2, 3])
    polled = rtu_site(tmp_path / "site.yaml", site_id, line, [1, 2, 3, 4])  # 4 is dead
    counters = GatewayCounters()
    async with simulate(served), gateway(polled, mqtt_url, mqtt_protocol, counters):
        for unit in (1, 2, 3):
            await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, f"sg-{unit}",
                                 timeout_s=20)
        dead = await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS, "sg-4",
                                    lambda s: s.state == "offline", timeout_s=20)
        assert dead.reason == "timeout after 2 tries"
        start = {u: counters.devices[f"sg-{u}"].polls for u in (1, 2, 3, 4)}
        await until(lambda: counters.devices["sg-1"].polls >= start[1] + 12
                    and counters.devices["sg-4"].polls >= start[4] + 10, timeout_s=30)
    line_counters = counters.lines["rs485-1"]
    for unit in (1, 2, 3):
        assert counters.devices[f"sg-{unit}"].failures == 0
        status = inbox.all_of(DeviceStatus, TopicKind.DEVICE_STATUS, f"sg-{unit}")
        assert [s.state for s in status] == ["online"]
    # the dead unit is asked again only after a growing pause: most of its polls cost the
    # line nothing, so it took far fewer timeouts than it had polls
    dead_polls = counters.devices["sg-4"].polls - start[4]
    assert dead_polls >= 10
    assert line_counters.timeouts < counters.devices["sg-4"].polls / 2
    assert line_counters.opens == 1


async def test_a_serial_device_server_that_drops_the_connection(
    tmp_path: Path, mqtt_url: str, mqtt_protocol: str, site_id: str, inbox: Inbox,
) -> None:
    line = server_line(free_port())
    site = rtu_site(tmp_path / "site.yaml", site_id, line, [1, 2])
    counters = GatewayCounters()
    async with gateway(site, mqtt_url, mqtt_protocol, counters):
        async with simulate(site):
            for unit in (1, 2):
                await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS, f"sg-{unit}",
                                     lambda s: s.state == "online", timeout_s=20)
        # the device server went away with the connection; both units go offline
        for unit in (1, 2):
            await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS, f"sg-{unit}",
                                 lambda s: s.state == "offline", timeout_s=20)
        async with simulate(site):
            for unit in (1, 2):
                back = await inbox.wait_for(DeviceStatus, TopicKind.DEVICE_STATUS,
                                            f"sg-{unit}", lambda s: "recovered" in s.reason,
                                            timeout_s=40)
                assert back.state == "online"
    assert counters.lines["rs485-1"].opens >= 2
    assert counters.failures["transport"] >= 1


@pytest.fixture
def pty_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "dev"
    d.mkdir()
    yield d


async def test_a_serial_line_on_a_pty_pair_read_by_the_gateway_and_by_mbpoll(
    tmp_path: Path, pty_dir: Path, mqtt_url: str, mqtt_protocol: str, site_id: str,
    inbox: Inbox,
) -> None:
    port = pty_dir / "ttyRS485"
    # 8N1: Linux pseudo-terminals refuse parity (tcsetattr EINVAL); real ports take E or O
    line = {"id": "rs485-2", "serial": str(port), "baudrate": 9600, "parity": "N",
            "timeout_s": 0.5}
    (tmp_path / "sim").mkdir()
    served = rtu_site(tmp_path / "sim" / "site.yaml", site_id, line, [1, 2])
    polled = rtu_site(tmp_path / "site.yaml", site_id, line, [1, 2])
    counters = GatewayCounters()
    async with simulate(served):
        assert port.is_symlink()
        # an independent RTU master reads unit 2's breakers
        assert shutil.which("mbpoll"), ("mbpoll is not installed: sudo apt-get install mbpoll"
                                        " (`make test` installs it: scripts/system-packages)")
        r = await asyncio.to_thread(
            subprocess.run, ["mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", "-a", "2",
                             "-t", "1", "-r", "1", "-c", "3", "-1", "-o", "2",
                             str(port.resolve())],
            capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "[1]:" in r.stdout and "[3]:" in r.stdout
        async with gateway(polled, mqtt_url, mqtt_protocol, counters):
            for unit in (1, 2):
                t = await inbox.wait_for(Telemetry, TopicKind.TELEMETRY, f"sg-{unit}",
                                         timeout_s=20)
                assert isinstance(t.points["voltage_l1"], float)
                assert t.points["incoming_breaker_closed"] in (True, False)
    assert counters.lines["rs485-2"].requests >= 4


async def test_discover_finds_the_units_of_a_line_and_of_a_tcp_host(tmp_path: Path,
                                                                      site_id: str) -> None:
    line = server_line(free_port(), baudrate=115200)
    (tmp_path / "sim").mkdir()
    served = rtu_site(tmp_path / "sim" / "site.yaml", site_id, line, [2, 5])
    polled = rtu_site(tmp_path / "site.yaml", site_id, line, [1])
    tcp_port = free_port()
    (tmp_path / "tcp").mkdir()
    tcp_site = write_site(tmp_path / "tcp", site_id, (
        f"      - {{id: lift, type: elevator, profile: elevator, address: {{protocol: modbus,"
        f" port: {tcp_port}, unit: 3}}}}\n"))
    async with simulate(served), ModbusDeviceServer(tcp_site.devices["lift"], ELEVATOR):
        await run_discover([], [f"127.0.0.1:{tcp_port}"], tmp_path / "out", timeout_s=0.5,
                           targets=Targets(units=range(1, 7), gateway=polled.gateway("gw-t")))
    draft = load_site(tmp_path / "out" / "site.yaml")
    assert set(draft.devices) == {"rs485-1-unit-2", "rs485-1-unit-5", f"modbus-{tcp_port}-3"}
    unit = draft.devices["rs485-1-unit-5"]
    assert unit.config.address.model_dump() == {"protocol": "modbus-rtu", "line": "rs485-1",
                                                "unit": 5}
    names = {p.name for p in unit.profile.points}
    assert {"input_0", "input_18", "discrete_0", "discrete_2"} <= names
    assert draft.gateway("gw-draft").line("rs485-1").server == line["server"]
