"""Runs a site's simulators: the entry point the CLI calls. `run_simulators` builds a model per
device (seeded by the device id, so every run behaves the same) and links the models of each
building (simulators.estate: a power outage stops that building's elevators and pumps, a
fire alarm recalls its elevators), starts a Modbus TCP or BACnet/IP server for each selected
device (units on an RTU line share the line's simulated serial device server or pty,
simulators.rtu_server) with its misbehaviour from the scenario's `simulation:` mapping, sets
`ready` once all listen, then ticks at a fixed rate on the loop clock: scenario events due,
models stepped, changed values published. Elapsed time counts from `ready`, multiplied by
`time_scale` (tests run the estate ten times faster; scenario times are simulated time). It
runs until cancelled and then closes every server, so the same ports can be bound again at
once. Protocol faults are played on the servers: `comms_loss` closes the device's server
while it lasts (connections refused or, over UDP, unanswered); `slow`, `mute`,
`drop_connections`, `modbus_busy`, `modbus_device_failure`, `point_fault` and
`out_of_service` overlay the device's behaviour while they last."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Protocol

from facility.site import Device, Site
from simulators.bacnet_server import BacnetDeviceServer
from simulators.errors import ServerStartError, UnknownDevices
from simulators.estate import Estate
from simulators.misbehaviour import (
    DEFAULT_FAULT,
    MISBEHAVIOURS,
    WELL_BEHAVED,
    Behaviour,
    Overlay,
    effective,
)
from simulators.modbus_server import ModbusDeviceServer
from simulators.models import DeviceModel, PointValue, build_model, seed_for
from simulators.rtu_server import RtuLines
from simulators.scenario import Scenario
from simulators.scenario_runner import FaultEvent, ScenarioRunner, apply_event

log = logging.getLogger(__name__)

TICK_S = 0.2


class DeviceServer(Protocol):
    device_id: str

    @property
    def behaviour(self) -> Behaviour: ...

    def set_behaviour(self, behaviour: Behaviour) -> None: ...

    async def start(self) -> None: ...

    async def publish(self, values: Mapping[str, PointValue]) -> None: ...

    async def close(self) -> None: ...


def make_server(
    device: Device, initial: Mapping[str, PointValue], behaviour: Behaviour = WELL_BEHAVED,
    lines: RtuLines | None = None,
) -> DeviceServer:
    if device.config.address.protocol == "modbus-rtu":
        if lines is None:
            raise ValueError(f"device {device.id} is on an RTU line: give the site's lines")
        return lines.unit_server(device, initial, behaviour)
    if device.config.address.protocol == "modbus":
        return ModbusDeviceServer(device, initial, behaviour=behaviour, seed=seed_for(device.id))
    return BacnetDeviceServer(device, initial, behaviour=behaviour)


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
    time_scale: float = 1.0,
    clock: Callable[[], float] | None = None,
) -> None:
    """Serve every (or each selected) device of the site until cancelled. ``clock`` gives
    the simulated seconds since ready in place of the loop clock times ``time_scale`` (a
    test sets it by hand to play a scenario step by step)."""
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    sim = scenario if scenario is not None else Scenario()
    selected = select_devices(site, devices)
    models: dict[str, DeviceModel] = {
        d.id: build_model(d.type, seed=seed_for(d.id)) for d in selected
    }
    estate = Estate(models, {d.id: d.building for d in selected})
    estate.step(0.0)
    lines = RtuLines(site, selected, {d.id: models[d.id].points() for d in selected})
    servers = {
        d.id: make_server(d, models[d.id].points(), sim.simulation.get(d.id, WELL_BEHAVED),
                          lines)
        for d in selected
    }
    async with AsyncExitStack() as stack:
        for server in servers.values():
            await server.start()
            stack.push_async_callback(server.close)
        log.info("%d simulators of site %s listening", len(servers), site.id)
        if ready is not None:
            ready.set()
        player = FaultPlayer(estate, servers, sim)
        runner = ScenarioRunner(sim, models.keys())
        await _tick_forever(estate, servers, runner, player, tick_s,
                            clock or _loop_clock(time_scale))


def _loop_clock(time_scale: float) -> Callable[[], float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    return lambda: (loop.time() - start) * time_scale


class FaultPlayer:
    """Plays due scenario events on the models (device faults) or the servers (protocol)."""

    def __init__(
        self, estate: Estate, servers: Mapping[str, DeviceServer], scenario: Scenario
    ) -> None:
        self.estate = estate
        self.servers = servers
        self.base = {d: scenario.simulation.get(d, WELL_BEHAVED) for d in servers}
        self.overlays: dict[str, list[Overlay]] = {d: [] for d in servers}
        self.down: set[str] = set()  # devices whose server is closed by a comms_loss fault

    async def play(self, event: FaultEvent) -> None:
        if event.fault == "comms_loss":
            await self._comms_loss(event)
        elif event.fault in MISBEHAVIOURS:
            overlays = self.overlays[event.device]
            overlay = Overlay(event.fault, event.delay_s or 0.0, event.point or "",
                              event.reliability or DEFAULT_FAULT)
            if event.active:
                overlays.append(overlay)
            elif overlay in overlays:
                overlays.remove(overlay)
            self.servers[event.device].set_behaviour(
                effective(self.base[event.device], overlays)
            )
            log.info("%s", event.describe())
        else:
            apply_event(event, self.estate.models)

    async def _comms_loss(self, event: FaultEvent) -> None:
        server = self.servers[event.device]
        if event.active and event.device not in self.down:
            await server.close()
            self.down.add(event.device)
        elif not event.active and event.device in self.down:
            try:
                await server.start()
            except ServerStartError:
                log.exception("%s, but the simulator cannot listen again", event.describe())
                return
            self.down.discard(event.device)
        log.info("%s", event.describe())


async def _tick_forever(
    estate: Estate,
    servers: Mapping[str, DeviceServer],
    scenario: ScenarioRunner,
    player: FaultPlayer,
    tick_s: float,
    clock: Callable[[], float],
) -> None:
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    failing: set[str] = set()
    skipped = 0
    while True:
        elapsed = clock()
        for event in scenario.due(elapsed):
            await player.play(event)
        estate.step(elapsed)
        for device_id, model in estate:
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
