"""Runs a site's simulators: the entry point the CLI calls.

`run_simulators` builds a model per device (seeded by the device id, so every run behaves
the same), starts a Modbus TCP or BACnet/IP server for each selected device, sets `ready`
once all listen, then ticks at a fixed rate on the loop clock: scenario events due, models
stepped, values published. Elapsed time counts from `ready`. It runs until cancelled and
then closes every server, so the same ports can be bound again at once. The `comms_loss`
fault is played here, by closing the device's server while it lasts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Protocol

from facility.scenario import Scenario
from facility.site import Device, Site
from simulators.bacnet_server import BacnetDeviceServer
from simulators.errors import ServerStartError, UnknownDevices
from simulators.modbus_server import ModbusDeviceServer
from simulators.models import DeviceModel, PointValue, build_model, seed_for
from simulators.scenario_runner import FaultEvent, ScenarioRunner, apply_event

log = logging.getLogger(__name__)

TICK_S = 0.2


class DeviceServer(Protocol):
    device_id: str

    async def start(self) -> None: ...

    async def publish(self, values: Mapping[str, PointValue]) -> None: ...

    async def close(self) -> None: ...


def make_server(device: Device, initial: Mapping[str, PointValue]) -> DeviceServer:
    if device.config.address.protocol == "modbus":
        return ModbusDeviceServer(device, initial)
    return BacnetDeviceServer(device, initial)


def select_devices(site: Site, devices: set[str] | None) -> list[Device]:
    if devices is None:
        return list(site.devices.values())
    unknown = devices - site.devices.keys()
    if unknown:
        raise UnknownDevices(site.id, unknown)
    return [d for d in site.devices.values() if d.id in devices]


async def run_simulators(
    site: Site,
    scenario: Scenario | None = None,
    *,
    ready: asyncio.Event | None = None,
    devices: set[str] | None = None,
    tick_s: float = TICK_S,
) -> None:
    """Serve every (or each selected) device of the site until cancelled."""
    selected = select_devices(site, devices)
    models: dict[str, DeviceModel] = {}
    for d in selected:
        models[d.id] = build_model(d.type, seed=seed_for(d.id))
        models[d.id].step(0.0)
    servers = {d.id: make_server(d, models[d.id].points()) for d in selected}
    async with AsyncExitStack() as stack:
        for server in servers.values():
            await server.start()
            stack.push_async_callback(server.close)
        log.info("%d simulators of site %s listening", len(servers), site.id)
        if ready is not None:
            ready.set()
        await _tick_forever(models, servers, ScenarioRunner(scenario, models.keys()), tick_s)


async def _tick_forever(
    models: Mapping[str, DeviceModel],
    servers: Mapping[str, DeviceServer],
    scenario: ScenarioRunner,
    tick_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    start = next_tick = loop.time()
    down: set[str] = set()  # devices whose server is closed by a comms_loss fault
    failing: set[str] = set()
    skipped = 0
    while True:
        elapsed = loop.time() - start
        for event in scenario.due(elapsed):
            await _play(event, models, servers, down)
        for device_id, model in models.items():
            model.step(elapsed)
            if device_id in down:
                continue
            try:
                await servers[device_id].publish(model.points())
            except Exception:
                if device_id not in failing:
                    log.exception("simulator %s cannot publish its values", device_id)
                    failing.add(device_id)
            else:
                if device_id in failing:
                    log.info("simulator %s publishes again", device_id)
                    failing.discard(device_id)
        next_tick += tick_s
        now = loop.time()
        if now > next_tick:  # late: skip the ticks we missed rather than bunch them
            missed = int((now - next_tick) // tick_s) + 1
            skipped += missed
            next_tick += missed * tick_s
            log.debug("simulator ticks skipped: %d (total %d)", missed, skipped)
        await asyncio.sleep(next_tick - now)


async def _play(
    event: FaultEvent,
    models: Mapping[str, DeviceModel],
    servers: Mapping[str, DeviceServer],
    down: set[str],
) -> None:
    if event.fault != "comms_loss":
        apply_event(event, models)
        return
    server = servers[event.device]
    if event.active and event.device not in down:
        await server.close()
        down.add(event.device)
    elif not event.active and event.device in down:
        try:
            await server.start()
        except ServerStartError:
            log.exception("%s, but the simulator cannot listen again", event.describe())
            return
        down.discard(event.device)
    log.info("%s", event.describe())
