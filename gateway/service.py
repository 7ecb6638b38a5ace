"""The gateway service: polls the devices of one gateway and publishes per MQTT contract v1
until stopped.

``run_gateway`` opens the on-disk store-and-forward queue (resuming whatever a previous run
left in it) and the MQTT connection with a will saying ``offline`` for a fresh session id,
and starts polling once connected, or after ``CONNECT_GRACE_S`` whether or not the broker
is reachable: messages wait in the queue until it is. At every (re)connect it publishes
``online`` for that session (the broker may have published the will meanwhile). It starts
one BACnet application if any device speaks BACnet, the metrics endpoint if a port is
configured, and one named task
``poll[<device>]`` per device in a TaskGroup, with start offsets staggered across the poll
interval and poll-class phases staggered across devices.

It stops at its stop signal (``stopping``, set by the runner at SIGTERM/SIGINT) or when
cancelled, inside the runner's bound (``facility.runner.STOP_BOUND_S``): the pollers
finish the poll in hand without waiting for room in the in-flight window (those still busy
after ``POLLERS_STOP_S`` are cancelled, again until they end), then it publishes
``offline`` for the same session, waits up to ``DRAIN_S`` for the PUBACKs of messages in
flight, spools whatever is unacknowledged to disk, then closes the BACnet application and
the MQTT connection. If the runner's bound passes first, the same spool runs as its last
save."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from facility.mqtt import MqttClient, MqttError, Will
from facility.mqtt_endpoint import MqttEndpoint
from facility.profiles import BacnetProfile, ModbusProfile
from facility.site import (
    BacnetAddress,
    Device,
    GatewayConfig,
    ModbusAddress,
    ModbusRtuAddress,
    Site,
)
from facility.stopping import Stopping, wind_down
from gateway.bacnet_net import BacnetBind, resolve_bind
from gateway.buffer import MessageStore
from gateway.counters import GatewayCounters
from gateway.forwarder import Forwarder
from gateway.metrics import Gauges, MetricsServer, collect
from gateway.modbus import ModbusReader
from gateway.poller import DevicePoller
from gateway.publisher import Publisher, gateway_status
from gateway.reading import DeviceReader
from gateway.rtu_line import RtuLine

if TYPE_CHECKING:
    from gateway.bacnet import BacnetClient

log = logging.getLogger(__name__)

POLLERS_STOP_S = 2.0  # for the polls in hand to finish before they are cancelled
DRAIN_S = 4.0  # offline status and the PUBACKs of the messages in flight
RECONNECT_CHECK_S = 1.0
STATUS_TIMEOUT_S = 10.0
CONNECT_GRACE_S = 5.0
RECONNECT_MAX_S = 2  # the longest wait between two connection attempts
DEFAULT_STATE_DIR = Path(".facility")


def buffer_path(site: Site, gw: GatewayConfig, state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    """The queue file: the configured path (relative to the site file), else in state_dir."""
    if gw.buffer.path:
        return (site.path.parent / gw.buffer.path).resolve()
    return state_dir / f"gateway-{site.id}-{gw.id}.sqlite"


async def run_gateway(
    site: Site, gateway_id: str, mqtt_url: str | MqttEndpoint, *, mqtt_protocol: str = "5",
    ready: asyncio.Event | None = None, counters: GatewayCounters | None = None,
    state_dir: Path = DEFAULT_STATE_DIR, metrics_port: int | None = None,
    metrics: list[MetricsServer] | None = None, stopping: Stopping | None = None,
) -> None:
    """Poll and publish until ``stopping`` is set or cancelled; ``ready`` is set once
    polling. ``metrics_port`` overrides the gateway's configured one; a started server is
    appended to ``metrics``."""
    stopping = stopping if stopping is not None else Stopping()
    gw = site.gateway(gateway_id)
    gw_index = next(i for i, g in enumerate(site.config.gateways) if g.id == gateway_id)
    bind = resolve_bind(gw.bacnet, site.path, f"gateways[{gw_index}].bacnet")  # fail early
    devices = site.devices_of_gateway(gateway_id)
    counters = counters if counters is not None else GatewayCounters()
    session = uuid.uuid4().hex
    will_topic, will_payload = gateway_status(site.id, gateway_id, session, "offline")
    # back within RECONNECT_MAX_S of the broker: what it read meanwhile goes out live
    mqtt = MqttClient(mqtt_url, f"gateway-{site.id}-{gateway_id}-{session[:8]}",
                      protocol=mqtt_protocol, will=Will(will_topic, will_payload),
                      reconnect_max_s=RECONNECT_MAX_S)
    async with AsyncExitStack() as stack:
        store = await asyncio.to_thread(MessageStore, buffer_path(site, gw, state_dir),
                                        gw.buffer.max_messages, gw.buffer.max_bytes)
        forwarder = Forwarder(mqtt, store, counters, puback_timeout_s=gw.buffer.puback_timeout_s,
                              replay_rate_per_s=gw.buffer.replay_rate_per_s,
                              node_stall_s=gw.buffer.node_stall_s)
        await mqtt.start()
        stack.push_async_callback(mqtt.close)
        stack.push_async_callback(forwarder.close)
        stopping.on_overdue("the unacknowledged messages to the queue", forwarder.salvage)
        publisher = Publisher(mqtt, forwarder, site.id, gateway_id, session,
                              report_period_s=gw.report_period_s)
        port = metrics_port if metrics_port is not None else gw.metrics_port
        if port is not None:
            server = MetricsServer(lambda: collect(gateway_id, counters, Gauges(
                forwarder.depth, forwarder.inflight, len(devices))), port)
            await server.start()
            stack.push_async_callback(server.close)
            if metrics is not None:
                metrics.append(server)
        log.info("gateway %s starting (session %s) with %d devices", gateway_id, session,
                 len(devices))
        try:  # normally the broker answers at once: the first readings then go out live
            await mqtt.wait_connected(CONNECT_GRACE_S)
        except MqttError:
            log.warning("broker %s not connected yet (the MQTT line above says why); polling "
                        "into the queue meanwhile", mqtt.url)
        readers = await _open_readers(devices, gw, counters, stack, bind)
        every = gw.poll_classes.model_dump()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(stopping.watch_cancel(), name=f"stop-watch[{gateway_id}]")
                services = [
                    tg.create_task(forwarder.run(), name=f"forward[{gateway_id}]"),
                    tg.create_task(
                        _announce_on_connect(mqtt, publisher, gateway_id, gw.heartbeat_s),
                        name=f"announce[{gateway_id}]")]
                pollers: list[asyncio.Task[None]] = []
                for i, device in enumerate(devices):
                    poller = DevicePoller(
                        device, readers[device.id], publisher, counters,
                        offline_after=gw.offline_after_failures,
                        offset_s=device.config.poll_interval_s * i / len(devices),
                        every=every, phase=i, stopping=stopping,
                    )
                    pollers.append(tg.create_task(poller.run(), name=f"poll[{device.id}]"))
                tg.create_task(wind_down(stopping, pollers, services, grace_s=POLLERS_STOP_S),
                               name=f"wind-down[{gateway_id}]")
                tg.create_task(_stop_waiting(stopping, forwarder),
                               name=f"stop-waiting[{gateway_id}]")
                if ready is not None:
                    ready.set()
        finally:
            await _say_offline(publisher, gateway_id)


async def _open_readers(devices: list[Device], gw: GatewayConfig, counters: GatewayCounters,
                        stack: AsyncExitStack, bind: BacnetBind) -> dict[str, DeviceReader]:
    readers: dict[str, DeviceReader] = {}
    bacnet: BacnetClient | None = None
    lines: dict[str, RtuLine] = {}
    for d in devices:
        address, profile = d.config.address, d.profile
        if isinstance(address, ModbusAddress) and isinstance(profile, ModbusProfile):
            readers[d.id] = ModbusReader(d.id, address, profile.points,
                                         timeout_s=d.config.timeout_s,
                                         options=d.config.modbus_options, counters=counters)
        elif isinstance(address, ModbusRtuAddress) and isinstance(profile, ModbusProfile):
            line = lines.get(address.line)
            if line is None:  # one line, shared by its units' readers
                line = lines[address.line] = RtuLine(gw.line(address.line),
                                                     counters.line(address.line))
                stack.push_async_callback(line.close)
            readers[d.id] = ModbusReader(d.id, address, profile.points,
                                         timeout_s=line.config.timeout_s,
                                         options=d.config.modbus_options, counters=counters,
                                         line=line, poll_interval_s=d.config.poll_interval_s)
        elif isinstance(address, BacnetAddress) and isinstance(profile, BacnetProfile):
            # imported here: a gateway without BACnet devices starts without bacpypes3
            # (measured: 1.8 s of a start, which a restart waits for)
            from gateway.bacnet import BacnetClient, BacnetReader

            if bacnet is None:
                bacnet = BacnetClient(bind)
                await bacnet.start()
                stack.push_async_callback(bacnet.close)
            readers[d.id] = BacnetReader(bacnet, d.id, address, profile.points,
                                         timeout_s=d.config.timeout_s, counters=counters,
                                         cov_lifetime_s=gw.cov_lifetime_s,
                                         integrity_s=gw.integrity_poll_s)
    return readers


async def _announce_on_connect(mqtt: MqttClient, publisher: Publisher, gateway_id: str,
                               heartbeat_s: float) -> None:
    """At every connect say online (after a lost connection the broker may have published
    our will), and again every ``heartbeat_s`` while connected: the heartbeat by which the
    rules judge us alive when a clustered broker has lost our will with its node."""
    loop = asyncio.get_running_loop()
    first = True
    while True:
        await mqtt.connected.wait()
        await publisher.publish_gateway_status("online", timeout_s=STATUS_TIMEOUT_S)
        if first:
            log.info("gateway %s online (session %s), heartbeat every %g s", gateway_id,
                     publisher.session, heartbeat_s)
            first = False
        beat_at = loop.time() + heartbeat_s
        while mqtt.connected.is_set() and loop.time() < beat_at:  # noqa: ASYNC110
            await asyncio.sleep(min(RECONNECT_CHECK_S, max(0.0, beat_at - loop.time())))


async def _stop_waiting(stopping: Stopping, forwarder: Forwarder) -> None:
    """At the stop signal, pollers no longer wait for room in the in-flight window."""
    await stopping.wait()
    forwarder.stop_waiting()


async def _say_offline(publisher: Publisher, gateway_id: str) -> None:
    """Publish the session's offline status and let in-flight messages finish (bounded)."""
    with contextlib.suppress(TimeoutError, MqttError):
        async with asyncio.timeout(DRAIN_S):
            await publisher.publish_gateway_status("offline", timeout_s=DRAIN_S)
            await publisher.drain(DRAIN_S)
    log.info("gateway %s offline (session %s, last seq %d)", gateway_id, publisher.session,
             publisher.last_seq)
