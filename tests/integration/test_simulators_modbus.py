"""Conformance of the Modbus simulators, read with a plain pymodbus client and decoded here
with struct (no gateway code): profile layout, word orders, scaling, a scenario's
entrapment in the served registers, and clean shutdown (a second run binds the same ports)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from collections.abc import Awaitable
from contextlib import suppress
from pathlib import Path

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient

from facility.ports import free_port
from facility.site import Site, load_site
from simulators.errors import UnknownDevices
from simulators.runner import run_simulators
from simulators.scenario import Scenario
from tests.integration.sim_support import client, eventually, f32, simulators

ROOT = Path(__file__).resolve().parents[2]
# The pump set's points, laid out in every word order the profiles allow.
ORDERS_PROFILE = {
    "profile": "pump_set_orders",
    "protocol": "modbus",
    "points": [
        {
            "name": "outlet_pressure",
            "table": "input",
            "address": 0,
            "type": "float32",
            "order": "ABCD",
        },
        {
            "name": "pressure_setpoint",
            "table": "holding",
            "address": 0,
            "type": "float32",
            "order": "CDAB",
        },
        {"name": "tank_level", "table": "input", "address": 4, "type": "float32", "order": "DCBA"},
        {
            "name": "inlet_pressure",
            "table": "input",
            "address": 6,
            "type": "float32",
            "order": "BADC",
        },
        {"name": "run_hours_1", "table": "input", "address": 8, "type": "uint32", "order": "CDAB"},
        {
            "name": "vfd_frequency",
            "table": "holding",
            "address": 10,
            "type": "uint16",
            "scale": 0.01,
        },
        {"name": "pump_1_running", "table": "holding", "address": 12, "type": "bool", "bit": 0},
        {"name": "pump_2_running", "table": "holding", "address": 12, "type": "bool", "bit": 1},
        {"name": "pump_1_fault", "table": "discrete", "address": 0, "type": "bool"},
    ],
}


def make_site(tmp_path: Path) -> Site:
    profiles = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", profiles)
    (profiles / "pump_set_orders.yaml").write_text(yaml.safe_dump(ORDERS_PROFILE))
    site = {
        "site": "simtest",
        "profiles_dir": str(profiles),
        "gateways": [{"id": "gw"}],
        "buildings": [
            {
                "id": "a",
                "gateway": "gw",
                "devices": [
                    {
                        "id": "lift",
                        "type": "elevator",
                        "profile": "elevator",
                        "address": {"protocol": "modbus", "port": free_port(), "unit": 3},
                    },
                    {
                        "id": "pumps",
                        "type": "pump_set",
                        "profile": "pump_set_orders",
                        "address": {"protocol": "modbus", "port": free_port(), "unit": 1},
                    },
                    {
                        "id": "gear",
                        "type": "switchgear",
                        "profile": "switchgear",
                        "address": {"protocol": "modbus", "port": free_port(), "unit": 1},
                    },
                ],
            }
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return load_site(path)


async def not_(check: Awaitable[bool]) -> bool:
    return not await check


async def test_profile_layout_decodes_independently(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    async with simulators(site), client(site, "pumps") as c:
        inputs = (await c.read_input_registers(0, count=10, device_id=1)).registers
        holding = (await c.read_holding_registers(0, count=13, device_id=1)).registers
        discrete = (await c.read_discrete_inputs(0, count=1, device_id=1)).bits
    assert f32(inputs[0], inputs[1]) == pytest.approx(0.45, abs=0.01)  # ABCD
    assert f32(holding[1], holding[0]) == pytest.approx(0.45, rel=1e-6)  # CDAB
    assert f32(holding[0], holding[1]) != pytest.approx(0.45, abs=0.1)
    tank = struct.unpack("<f", struct.pack(">HH", inputs[4], inputs[5]))[0]  # DCBA
    assert tank == pytest.approx(2.5, rel=1e-6)
    inlet = struct.unpack(">f", struct.pack("<HH", inputs[6], inputs[7]))[0]  # BADC
    assert inlet == pytest.approx(0.15, abs=0.01)
    assert 1000 <= (inputs[9] << 16 | inputs[8]) <= 9000  # uint32 CDAB
    assert 30.0 <= holding[10] * 0.01 <= 50.0
    running = [bool(holding[12] & 1), bool(holding[12] & 2)]
    assert any(running) and holding[12] & ~3 == 0
    assert discrete[0] is False


async def test_elevator_and_switchgear_layout(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    async with simulators(site):
        async with client(site, "lift") as c:
            regs = (await c.read_holding_registers(0, count=10, device_id=3)).registers
            bits = (await c.read_discrete_inputs(0, count=4, device_id=3)).bits[:4]
            beyond = await c.read_holding_registers(10, count=1, device_id=3)
            no_inputs = await c.read_input_registers(0, count=1, device_id=3)
        async with client(site, "gear") as c:
            meter = (await c.read_input_registers(0, count=19, device_id=1)).registers
            breakers = (await c.read_discrete_inputs(0, count=3, device_id=1)).bits[:3]
    moving, door_closed, door_zone, _alarm = bits
    assert 1 <= regs[0] <= 12  # car_floor
    assert regs[3] == regs[2] * 75  # load_kg follows passengers
    speed = struct.unpack(">h", struct.pack(">H", regs[6]))[0] * 0.01
    assert speed in (0.0, pytest.approx(1.6), pytest.approx(0.3))
    assert (speed > 0) == moving and (regs[1] != 0) == moving
    assert door_closed or door_zone  # doors only open at a landing
    assert beyond.isError() and no_inputs.isError()
    for phase in range(3):
        assert 225 <= f32(meter[2 * phase], meter[2 * phase + 1]) <= 235
    assert 35.0 <= struct.unpack(">h", struct.pack(">H", meter[18]))[0] * 0.1 <= 61.0
    assert meter[16] << 16 | meter[17] >= 100_000  # energy_kwh
    assert breakers == [True, True, True]


async def test_scenario_entrapment_shows_in_the_served_registers(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    scenario = Scenario.model_validate(
        {"steps": [{"at": "0.5s", "device": "lift", "fault": "entrapment", "duration": "1s"}]}
    )

    async def entrapped(c: AsyncModbusTcpClient) -> bool:
        moving, door_closed, door_zone = (
            await c.read_discrete_inputs(0, count=3, device_id=3)
        ).bits[:3]
        passengers = (await c.read_holding_registers(2, count=1, device_id=3)).registers[0]
        return not moving and door_closed and not door_zone and passengers > 0

    async with simulators(site, scenario), client(site, "lift") as c:
        await eventually(lambda: entrapped(c))
        await eventually(lambda: not_(entrapped(c)))  # released: levelling to a floor
        bits = (await c.read_discrete_inputs(0, count=3, device_id=3)).bits[:3]
        assert bits[0] or bits[2]  # moving, or in the door zone


async def test_a_second_run_binds_the_same_ports(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    for _ in range(2):
        async with simulators(site), client(site, "lift") as c:
            assert not (await c.read_holding_registers(0, count=1, device_id=3)).isError()
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []
    for device in site.devices.values():  # no listening socket left behind
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", device.config.address.port))


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_comms_loss_closes_the_device_server_while_it_lasts(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    port = site.devices["gear"].config.address.port
    scenario = Scenario.model_validate(
        {"steps": [{"at": "0.3s", "device": "gear", "fault": "comms_loss", "duration": "1s"}]}
    )
    async with simulators(site, scenario):
        assert await listening(port)
        await eventually(lambda: not_(listening(port)))
        assert await listening(site.devices["lift"].config.address.port)
        await eventually(lambda: listening(port))
        async with client(site, "gear") as c:
            meter = (await c.read_input_registers(0, count=2, device_id=1)).registers
        assert 225 <= f32(meter[0], meter[1]) <= 235


async def test_only_the_selected_devices_are_served(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    with pytest.raises(UnknownDevices) as info:
        await run_simulators(site, devices={"lift", "nope"})
    assert info.value.device_ids == {"nope"}
    ready = asyncio.Event()
    task = asyncio.create_task(run_simulators(site, ready=ready, devices={"lift"}))
    try:
        async with asyncio.timeout(5):
            await ready.wait()
        assert await listening(site.devices["lift"].config.address.port)
        assert not await listening(site.devices["gear"].config.address.port)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
