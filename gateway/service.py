"""The gateway service: polls the devices of one gateway and publishes per MQTT contract v1
until cancelled.

``run_gateway`` opens the MQTT connection with a will saying ``offline`` for a fresh session
id, publishes ``online`` for that session (again after every reconnect, since the broker may
have published the will meanwhile), starts one BACnet application if any device speaks
BACnet, and runs one named task ``poll[<device>]`` per device in a TaskGroup, with start
offsets staggered across the poll interval. On cancellation it publishes ``offline`` for
the same session, waits briefly for in-flight messages, then closes the readers, the BACnet
application and the MQTT connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from contextlib import AsyncExitStack

from facility.mqtt import MqttClient, MqttError, Will
from facility.profiles import BacnetProfile, ModbusProfile
from facility.site import BacnetAddress, Device, ModbusAddress, Site
from gateway.bacnet import BacnetClient, BacnetReader
from gateway.counters import GatewayCounters
from gateway.modbus import ModbusReader
from gateway.poller import DevicePoller
from gateway.publisher import Publisher, gateway_status
from gateway.reading import DeviceReader

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 5.0
CONNECT_WARN_S = 10.0
RECONNECT_CHECK_S = 1.0


async def run_gateway(
    site: Site, gateway_id: str, mqtt_url: str, *, mqtt_protocol: str = "5",
    ready: asyncio.Event | None = None, counters: GatewayCounters | None = None,
) -> None:
    """Poll and publish until cancelled; ``ready`` is set once online and polling."""
    gw = site.gateway(gateway_id)
    devices = site.devices_of_gateway(gateway_id)
    counters = counters if counters is not None else GatewayCounters()
    session = uuid.uuid4().hex
    will_topic, will_payload = gateway_status(site.id, gateway_id, session, "offline")
    mqtt = MqttClient(mqtt_url, f"gateway-{site.id}-{gateway_id}-{session[:8]}",
                      protocol=mqtt_protocol, will=Will(will_topic, will_payload))
    publisher = Publisher(mqtt, site.id, gateway_id, session, counters,
                          report_period_s=gw.report_period_s)
    async with AsyncExitStack() as stack:
        await mqtt.start()
        stack.push_async_callback(mqtt.close)
        await _wait_connected(mqtt)
        await publisher.publish_gateway_status("online")
        log.info("gateway %s online (session %s) with %d devices", gateway_id, session,
                 len(devices))
        readers = await _open_readers(devices, stack)
        try:
            async with asyncio.TaskGroup() as tg:
                for i, device in enumerate(devices):
                    poller = DevicePoller(
                        device, readers[device.id], publisher, counters,
                        offline_after=gw.offline_after_failures,
                        offset_s=device.config.poll_interval_s * i / len(devices),
                    )
                    tg.create_task(poller.run(), name=f"poll[{device.id}]")
                tg.create_task(_announce_on_reconnect(mqtt, publisher),
                               name=f"announce[{gateway_id}]")
                if ready is not None:
                    ready.set()
        finally:
            await _say_offline(publisher, gateway_id)


async def _open_readers(devices: list[Device], stack: AsyncExitStack) -> dict[str, DeviceReader]:
    readers: dict[str, DeviceReader] = {}
    bacnet: BacnetClient | None = None
    for d in devices:
        address, profile = d.config.address, d.profile
        if isinstance(address, ModbusAddress) and isinstance(profile, ModbusProfile):
            readers[d.id] = ModbusReader(d.id, address, profile.points,
                                         timeout_s=d.config.timeout_s)
        elif isinstance(address, BacnetAddress) and isinstance(profile, BacnetProfile):
            if bacnet is None:
                bacnet = BacnetClient()
                await bacnet.start()
                stack.push_async_callback(bacnet.close)
            readers[d.id] = BacnetReader(bacnet, d.id, address, profile.points,
                                         timeout_s=d.config.timeout_s)
    return readers


async def _wait_connected(mqtt: MqttClient) -> None:
    while True:
        try:
            await mqtt.wait_connected(CONNECT_WARN_S)
            return
        except MqttError as exc:
            log.warning("%s; still trying", exc)


async def _announce_on_reconnect(mqtt: MqttClient, publisher: Publisher) -> None:
    """After a lost connection the broker may have published our will: say online again."""
    while True:
        while mqtt.connected.is_set():  # noqa: ASYNC110 - no disconnect event to await
            await asyncio.sleep(RECONNECT_CHECK_S)
        await mqtt.connected.wait()
        await publisher.publish_gateway_status("online")


async def _say_offline(publisher: Publisher, gateway_id: str) -> None:
    """Publish the session's offline status and let in-flight messages finish (bounded)."""
    with contextlib.suppress(TimeoutError, MqttError):
        async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
            await publisher.publish_gateway_status("offline")
            await publisher.drain(SHUTDOWN_TIMEOUT_S)
    log.info("gateway %s offline (session %s)", gateway_id, publisher.session)
