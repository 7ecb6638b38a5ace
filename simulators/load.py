"""Load mode: many simulated devices for benchmarks, and the site file that matches them.

`build_load_site` lays out N Modbus devices of one profile (default profiles/load_meter.yaml,
50 points) over ports of `units_per_port` unit ids each (a Modbus TCP gateway in front of an
RS-485 line: 2,000 devices are 100 ports x 20 units), plus fire panels as BACnet/IP devices,
each on its own UDP port; buildings are the Modbus ports (and one for the panels), spread
round-robin over `gateways` gateways. `run_load` binds every server (free loopback ports, or
consecutive ones from `base_port`), then writes that site file atomically (so a benchmark
may wait for it to appear), sets `ready`, and updates values until cancelled: each tick
re-encodes only the live points (simulators.models.load_meter) of one slice of the devices,
so each device changes every `update_period_s`. Values are encoded with pymodbus' codec."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from facility.ports import free_port
from facility.profiles import ModbusProfile, load_profile
from facility.site import BacnetAddress, Device, Site, load_site
from simulators.bacnet_server import BacnetDeviceServer
from simulators.modbus_codec import (
    FUNCTION_CODE,
    build_sim_device,
    contiguous_runs,
    encode_registers,
)
from simulators.modbus_server import SimModbusServer, start_server
from simulators.models.fire_panel import FirePanelModel
from simulators.models.load_meter import LoadValues

log = logging.getLogger(__name__)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
UNITS_PER_PORT = 20
BACNET_PANELS = 20
PANEL_INSTANCE_BASE = 100_001
TICK_S = 1.0
UPDATE_PERIOD_S = 5.0


@dataclass(frozen=True, slots=True)
class LoadLayout:
    modbus_ports: tuple[int, ...]
    bacnet_ports: tuple[int, ...]


def port_count(n: int, units_per_port: int) -> int:
    return math.ceil(n / units_per_port)


def choose_ports(count: int, kind: int, base_port: int | None = None,
                 taken: Sequence[int] = ()) -> list[int]:
    """`count` loopback ports of this socket kind: consecutive from base_port (skipping
    `taken`), or ones the OS hands out now."""
    ports: list[int] = []
    if base_port is not None:
        port = base_port
        while len(ports) < count:
            if port > 65535:
                raise ValueError(f"not enough ports from {base_port} up")
            if port not in taken:
                ports.append(port)
            port += 1
        return ports
    seen = set(taken)
    while len(ports) < count:
        port = free_port(kind)
        if port not in seen:
            seen.add(port)
            ports.append(port)
    return ports


def plan_layout(n: int, bacnet_panels: int, units_per_port: int,
                base_port: int | None = None) -> LoadLayout:
    tcp = choose_ports(port_count(n, units_per_port), socket.SOCK_STREAM, base_port)
    udp_base = None if base_port is None else base_port + len(tcp)
    udp = choose_ports(bacnet_panels, socket.SOCK_DGRAM, udp_base, taken=tcp)
    return LoadLayout(tuple(tcp), tuple(udp))


def build_load_site(
    n: int,
    layout: LoadLayout,
    *,
    units_per_port: int = UNITS_PER_PORT,
    profile: str = "load_meter",
    profiles_dir: Path = PROFILES_DIR,
    gateways: int = 1,
    site_id: str = "load",
    poll_interval_s: float = 1.0,
) -> dict[str, Any]:
    """The site file (as a dict for yaml.safe_dump) for N devices laid out on these ports."""
    gateway_ids = [f"gw-load-{g + 1}" for g in range(gateways)]
    buildings: list[dict[str, Any]] = []
    for i, port in enumerate(layout.modbus_ports):
        units = range(1, min(units_per_port, n - i * units_per_port) + 1)
        devices = [
            {"id": f"m{i:03d}-u{u:02d}", "type": "switchgear", "profile": profile,
             "poll_interval_s": poll_interval_s,
             "address": {"protocol": "modbus", "port": port, "unit": u}}
            for u in units
        ]
        buildings.append({"id": f"line-{i:03d}", "gateway": gateway_ids[i % gateways],
                          "devices": devices})
    if layout.bacnet_ports:
        panels = [
            {"id": f"panel-{j + 1:02d}", "type": "fire_panel", "profile": "firepanel",
             "poll_interval_s": poll_interval_s,
             "address": {"protocol": "bacnet", "port": port,
                         "device_instance": PANEL_INSTANCE_BASE + j}}
            for j, port in enumerate(layout.bacnet_ports)
        ]
        buildings.append({"id": "panels", "gateway": gateway_ids[0], "devices": panels})
    return {
        "site": site_id,
        "name": f"Load test: {n} Modbus devices, {len(layout.bacnet_ports)} BACnet panels",
        "profiles_dir": str(profiles_dir.resolve()),
        "gateways": [{"id": g} for g in gateway_ids],
        "buildings": buildings,
    }


def write_site_file(site: dict[str, Any], path: Path) -> None:
    """Write atomically: the file appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(site, f, sort_keys=False)
    os.replace(tmp, path)


class LoadLine:
    """One Modbus TCP port serving several load devices (one unit id each)."""

    def __init__(self, port: int, devices: Sequence[Device], first_index: int) -> None:
        self.port = port
        self.devices = list(devices)
        self.values: list[LoadValues] = []
        sim_devices = []
        for k, d in enumerate(devices):
            assert isinstance(d.profile, ModbusProfile)
            v = LoadValues(d.profile, first_index + k)
            self.values.append(v)
            unit = d.config.address.unit  # type: ignore[union-attr]
            sim_devices.append(build_sim_device(d.profile, unit, v.initial()))
        self.server = SimModbusServer(sim_devices, ("127.0.0.1", port), seed=port)

    async def start(self) -> None:
        await start_server(self.server, self.devices[0].id, f"127.0.0.1:{self.port}")

    async def close(self) -> None:
        await self.server.shutdown()  # type: ignore[no-untyped-call]

    async def update(self, k: int, now: float) -> None:
        """Re-encode and write device k's live points."""
        device, values = self.devices[k], self.values[k]
        assert isinstance(device.profile, ModbusProfile)
        unit = device.config.address.unit  # type: ignore[union-attr]
        live = values.live(now)
        tables: dict[Any, dict[int, int | bool]] = {}
        for p in values.live_points:
            image = tables.setdefault(p.table, {})
            for i, reg in enumerate(encode_registers(p, live[p.name])):
                image[p.address + i] = reg
        for table, image in tables.items():
            for start, run in contiguous_runs(image):
                await self.server.async_setValues(unit, FUNCTION_CODE[table], start, run)


async def run_load(
    n: int,
    *,
    write_site: Path | None = None,
    bacnet_panels: int = BACNET_PANELS,
    units_per_port: int = UNITS_PER_PORT,
    base_port: int | None = None,
    profile: str = "load_meter",
    profiles_dir: Path = PROFILES_DIR,
    gateways: int = 1,
    update_period_s: float = UPDATE_PERIOD_S,
    tick_s: float = TICK_S,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve N load devices and the panels until cancelled; see the module docstring."""
    if n < 1 or not 1 <= units_per_port <= 247:
        raise ValueError("need n >= 1 and 1 <= units_per_port <= 247")
    prof = load_profile(profiles_dir / f"{profile}.yaml")
    if not isinstance(prof, ModbusProfile):
        raise ValueError(f"profile {profile} is not a Modbus profile")
    layout = plan_layout(n, bacnet_panels, units_per_port, base_port)
    raw = build_load_site(n, layout, units_per_port=units_per_port, profile=profile,
                          profiles_dir=profiles_dir, gateways=gateways)
    with tempfile.TemporaryDirectory(prefix="facility-load-") as tmp:
        draft = Path(tmp) / "site.yaml"
        write_site_file(raw, draft)
        site = load_site(draft)
    async with AsyncExitStack() as stack:
        lines = await _start_lines(site, layout, units_per_port, stack)
        await _start_panels(site, stack)
        if write_site is not None:
            write_site_file(raw, write_site)
        log.info("load mode: %d Modbus devices on %d ports, %d BACnet panels listening%s",
                 n, len(lines), len(layout.bacnet_ports),
                 f"; site file {write_site}" if write_site else "")
        if ready is not None:
            ready.set()
        await _update_forever(lines, update_period_s, tick_s)


async def _start_lines(site: Site, layout: LoadLayout, units_per_port: int,
                       stack: AsyncExitStack) -> list[LoadLine]:
    modbus = [d for d in site.devices.values() if d.config.address.protocol == "modbus"]
    lines = []
    for i, port in enumerate(layout.modbus_ports):
        devices = modbus[i * units_per_port:(i + 1) * units_per_port]
        line = LoadLine(port, devices, i * units_per_port)
        await line.start()
        stack.push_async_callback(line.close)
        lines.append(line)
    return lines


async def _start_panels(site: Site, stack: AsyncExitStack) -> None:
    for d in site.devices.values():
        if isinstance(d.config.address, BacnetAddress):
            server = BacnetDeviceServer(d, FirePanelModel().points())
            await server.start()
            stack.push_async_callback(server.close)


async def _update_forever(lines: Sequence[LoadLine], update_period_s: float,
                          tick_s: float) -> None:
    """Each tick updates one slice of the devices; every device once per update period."""
    slots = [(line, k) for line in lines for k in range(len(line.devices))]
    slices = max(1, round(update_period_s / tick_s))
    loop = asyncio.get_running_loop()
    start = next_tick = loop.time()
    tick = 0
    while True:
        now = loop.time() - start
        for line, k in slots[tick % slices::slices]:
            await line.update(k, now)
        tick += 1
        next_tick += tick_s
        delay = next_tick - loop.time()
        if delay < 0:  # late: skip rather than bunch up
            next_tick = loop.time()
            delay = 0
        await asyncio.sleep(delay)
