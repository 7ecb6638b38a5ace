"""Shared helpers of the simulator conformance tests: a site on ephemeral loopback ports,
the simulators running in the test's loop, plain pymodbus and bacpypes3 clients."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import yaml
from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from pymodbus.client import AsyncModbusTcpClient

from facility.ports import free_port
from facility.site import Site, load_site
from simulators.runner import run_simulators
from simulators.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]


def modbus(device_id: str, typ: str, profile: str, unit: int = 1) -> dict[str, Any]:
    return {"id": device_id, "type": typ, "profile": profile,
            "address": {"protocol": "modbus", "port": free_port(), "unit": unit}}


def bacnet(device_id: str, instance: int) -> dict[str, Any]:
    return {"id": device_id, "type": "fire_panel", "profile": "firepanel",
            "address": {"protocol": "bacnet", "port": free_port(socket.SOCK_DGRAM),
                        "device_instance": instance}}


def make_site(tmp_path: Path, buildings: dict[str, list[dict[str, Any]]]) -> Site:
    raw = {
        "site": "simtest",
        "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw"}],
        "buildings": [{"id": b, "gateway": "gw", "devices": d} for b, d in buildings.items()],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_site(path)


def scenario(raw: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(raw)


class ManualClock:
    """Simulated seconds since the simulators became ready, moved on by the test: a scenario
    step is due exactly when the test says, however slow the machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def simulators(
    site: Site, sc: Scenario | None = None, *, time_scale: float = 1.0,
    clock: ManualClock | None = None,
) -> AsyncIterator[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(
        run_simulators(site, sc, ready=ready, tick_s=0.05, time_scale=time_scale,
                       clock=clock)
    )
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises what stopped it
    assert ready.is_set(), "simulators did not become ready"
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def client(
    site: Site, device: str, timeout_s: float = 2.0
) -> AsyncIterator[AsyncModbusTcpClient]:
    address = site.devices[device].config.address
    c = AsyncModbusTcpClient("127.0.0.1", port=address.port, timeout=timeout_s, retries=0)
    assert await c.connect()
    try:
        yield c
    finally:
        c.close()


@asynccontextmanager
async def bacnet_client() -> AsyncIterator[Application]:
    port = free_port(socket.SOCK_DGRAM)
    device = DeviceObject(
        objectIdentifier=("device", 999002), objectName="test-client", vendorIdentifier=999
    )
    network = NetworkPortObject(
        f"127.0.0.1:{port}",
        objectIdentifier=("network-port", 1),
        objectName="NetworkPort-1",
        networkNumberQuality="unknown",
    )
    app = Application.from_object_list([device, network])
    try:
        yield app
    finally:
        app.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 8.0) -> None:
    """Poll until check() holds; TimeoutError if it never does."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


def f32(hi: int, lo: int) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


async def elevator_state(c: AsyncModbusTcpClient, unit: int = 1) -> dict[str, Any]:
    """The elevator profile's raw values, decoded here (not with the gateway)."""
    bits = (await c.read_discrete_inputs(0, count=4, device_id=unit)).bits[:4]
    regs = (await c.read_holding_registers(0, count=6, device_id=unit)).registers
    return {
        "moving": bits[0], "door_closed": bits[1], "door_zone": bits[2], "alarm_button": bits[3],
        "car_floor": regs[0], "direction": regs[1], "passengers": regs[2],
        "service_mode": regs[4], "fault_code": regs[5],
    }


async def pump_state(c: AsyncModbusTcpClient, unit: int = 1) -> dict[str, Any]:
    regs = (await c.read_input_registers(0, count=8, device_id=unit)).registers
    bits = (await c.read_discrete_inputs(0, count=5, device_id=unit)).bits[:5]
    return {
        "outlet_pressure": f32(regs[0], regs[1]), "vfd_frequency": f32(regs[2], regs[3]),
        "tank_level": f32(regs[4], regs[5]), "inlet_pressure": f32(regs[6], regs[7]),
        "pump_1_running": bits[0], "pump_2_running": bits[1],
        "pump_1_fault": bits[2], "pump_2_fault": bits[3],
    }
