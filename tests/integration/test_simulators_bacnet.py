"""Conformance of the fire-panel simulator over BACnet/IP, read by a plain bacpypes3 client
on its own UDP port (no gateway code): objects laid out from the profile, ReadProperty and
ReadPropertyMultiple, and a scenario's fire alarm in zone 3 on binaryInput 103."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import yaml
from bacpypes3.app import Application
from bacpypes3.pdu import Address

from facility.ports import free_port
from facility.site import Site, load_site
from simulators.runner import run_simulators
from simulators.scenario import Scenario
from tests.integration.sim_support import bacnet_client as sim_client
from tests.integration.sim_support import eventually

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = 4711


@pytest.fixture
def site(tmp_path: Path) -> Site:
    raw = {
        "site": "simtest",
        "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw"}],
        "buildings": [
            {
                "id": "a",
                "gateway": "gw",
                "devices": [
                    {
                        "id": "panel",
                        "type": "fire_panel",
                        "profile": "firepanel",
                        "address": {
                            "protocol": "bacnet",
                            "port": free_port(socket.SOCK_DGRAM),
                            "device_instance": INSTANCE,
                        },
                    },
                ],
            }
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_site(path)


@pytest.fixture
def panel_address(site: Site) -> Address:
    return Address(f"127.0.0.1:{site.devices['panel'].config.address.port}")


@pytest.fixture
async def bacnet_client() -> AsyncIterator[Application]:
    async with sim_client() as app:
        yield app


async def start(site: Site, scenario: Scenario | None) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(run_simulators(site, scenario, ready=ready, tick_s=0.05))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def read(app: Application, address: Address, objid: str, prop: str = "presentValue") -> Any:
    async with asyncio.timeout(3):
        return await app.read_property(address, objid, prop)


async def is_(app: Application, address: Address, objid: str, value: str) -> bool:
    return str(await read(app, address, objid)) == value


async def test_objects_follow_the_profile(
    site: Site, panel_address: Address, bacnet_client: Application
) -> None:
    task = await start(site, None)
    try:
        objects = await read(bacnet_client, panel_address, f"device,{INSTANCE}", "objectList")
        async with asyncio.timeout(3):
            rpm = await bacnet_client.read_property_multiple(
                panel_address,
                [
                    "binaryInput,103",
                    ["objectName", "description", "presentValue"],
                    "multiStateValue,1",
                    ["objectName", "presentValue", "numberOfStates"],
                ],
            )
    finally:
        await stop(task)
    ids = {(str(t), i) for t, i in objects}
    assert {("binary-input", n) for n in (101, 102, 103, 104, 201, 304)} <= ids
    assert ("multi-state-value", 1) in ids
    values = [str(v) for *_, v in rpm]
    assert values == ["zone_3_alarm", "Zone 3 fire alarm", "inactive", "panel_state", "1", "4"]


async def test_fire_alarm_in_zone_3_shows_on_binary_input_103(
    site: Site, panel_address: Address, bacnet_client: Application
) -> None:
    scenario = Scenario.model_validate(
        {
            "steps": [
                {
                    "at": "0.3s",
                    "device": "panel",
                    "fault": "fire_alarm",
                    "zone": 3,
                    "duration": "1s",
                }
            ]
        }
    )
    task = await start(site, scenario)
    try:
        await eventually(lambda: is_(bacnet_client, panel_address, "binaryInput,103", "active"))
        assert await read(bacnet_client, panel_address, "multiStateValue,1") == 2
        assert str(await read(bacnet_client, panel_address, "binaryInput,101")) == "inactive"
        # the fault ends after its duration
        await eventually(lambda: is_(bacnet_client, panel_address, "binaryInput,103", "inactive"))
        assert await read(bacnet_client, panel_address, "multiStateValue,1") == 1
    finally:
        await stop(task)


async def test_a_second_run_serves_on_the_same_port(
    site: Site, panel_address: Address, bacnet_client: Application
) -> None:
    for _ in range(2):
        task = await start(site, None)
        try:
            assert str(await read(bacnet_client, panel_address, "binaryInput,104")) == "inactive"
        finally:
            await stop(task)
        # the simulator's socket is gone: a plain bind (no SO_REUSEPORT) succeeds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", site.devices["panel"].config.address.port))
