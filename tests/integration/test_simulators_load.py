"""Load mode read by plain clients: devices spread over ports and unit ids serve the load
profile's values (decoded here with struct), values move, BACnet panels answer, and the
written site file loads and names exactly the served endpoints."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from bacpypes3.pdu import Address
from pymodbus.client import AsyncModbusTcpClient

from facility.site import BacnetAddress, ModbusAddress, load_site
from simulators.load import choose_ports, run_load
from tests.integration.sim_support import bacnet_client, eventually, f32


async def read_load_device(port: int, unit: int) -> tuple[list[int], list[int]]:
    """Input registers 0-60 and holding registers 0-10 of one load device."""
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    assert await c.connect()
    try:
        inputs = (await c.read_input_registers(0, count=61, device_id=unit)).registers
        holding = (await c.read_holding_registers(0, count=11, device_id=unit)).registers
    finally:
        c.close()
    return list(inputs), list(holding)


async def test_load_mode_serves_the_devices_of_its_site_file(tmp_path: Path) -> None:
    site_path = tmp_path / "out" / "load.yaml"
    ready = asyncio.Event()
    task = asyncio.create_task(run_load(
        45, write_site=site_path, bacnet_panels=2, units_per_port=20, ready=ready,
        update_period_s=0.2, tick_s=0.05))
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        site = load_site(site_path)
        modbus = [d for d in site.devices.values() if isinstance(d.config.address, ModbusAddress)]
        panels = [d for d in site.devices.values() if isinstance(d.config.address, BacnetAddress)]
        assert len(modbus) == 45 and len(panels) == 2
        last = site.devices["m002-u05"].config.address
        assert isinstance(last, ModbusAddress) and last.unit == 5
        inputs, holding = await read_load_device(last.port, last.unit)
        assert 220 <= f32(inputs[0], inputs[1]) <= 240  # voltage_l1
        assert 390 <= f32(inputs[6], inputs[7]) <= 410  # voltage_l12
        energy = inputs[45] << 16 | inputs[44]  # energy_import_kwh, CDAB
        assert 123_456 + 7 * 44 <= energy <= 123_456 + 7 * 44 + 5
        assert struct.pack(">4H", *holding[5:9]).rstrip(b"\0") == b"LM000044"
        assert 0.9 <= struct.unpack(">h", struct.pack(">H", inputs[35]))[0] * 0.001 <= 1.0

        async def moved() -> bool:
            again, _ = await read_load_device(last.port, last.unit)
            return again[0:2] != inputs[0:2]

        await eventually(moved)
        panel = panels[0].config.address
        assert isinstance(panel, BacnetAddress)
        async with bacnet_client() as app, asyncio.timeout(3):
            name = await app.read_property(
                Address(f"127.0.0.1:{panel.port}"), "binaryInput,103", "objectName")
        assert str(name) == "zone_3_alarm"
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def test_free_ports_are_distinct() -> None:
    assert len(set(choose_ports(30, socket.SOCK_STREAM))) == 30


def test_facility_simulate_load_writes_the_site_and_stops_on_sigterm(tmp_path: Path) -> None:
    site_path = tmp_path / "load.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "simulate", "--load", "30", "--bacnet-panels",
         "1", "--write-site", str(site_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not site_path.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no site file"
            time.sleep(0.1)
        site = load_site(site_path)
        assert len(site.devices) == 31
        with socket.create_connection(("127.0.0.1", site.devices["m001-u10"].config.address.port)):
            pass
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
