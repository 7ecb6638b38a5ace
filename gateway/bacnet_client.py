"""The gateway's one local BACnet/IP application (bacpypes3), shared by its BACnet readers
and by discovery: bound where the site says (``gateway.bacnet_net.BacnetBind``), with
broadcasts on that subnet, optionally registered as a foreign device with a BBMD; and the
device address book.

Binding: ``a.b.c.d/prefix:port`` (bacpypes3 then also listens on the subnet's broadcast
address); loopback binds 127.0.0.1/32 on a free port and never broadcasts. Foreign-device
registration is bacpypes3's: it registers at start and again every time-to-live (a BBMD
keeps an entry 30 s past it), and its state changes are logged once each.

Addresses (``locate``): a device with a host is at ``host:port``; one behind a router at
``network:mac``; one configured by device instance alone is found with a ranged Who-Is
(a global broadcast, through the BBMD when registered) and its I-Am's source is cached
until ``forget`` (the reader forgets it when the device stops answering, so a device that
moved is found again). A device that does not answer is ``AddressUnresolved``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from bacpypes3.app import Application
from bacpypes3.basetypes import HostNPort, IPMode
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address

from facility.ports import free_port
from facility.site import BacnetAddress
from gateway.bacnet_net import LOOPBACK, BacnetBind
from gateway.errors import AddressUnresolved

log = logging.getLogger(__name__)

LOCAL_DEVICE_INSTANCE = 4194301
VENDOR_ID = 999
BIND_TIMEOUT_S = 5.0
REGISTRATION_CHECK_S = 0.5
REGISTRATION_STATES = {-2: "not registered", -1: "registering", 0: "registered"}
REGISTRATION_WARN_S = 10.0  # no answer from the BBMD this long: say so
LOOKUP_RETRY_MIN_S = 5.0  # a device instance no I-Am answered: next Who-Is after this,
LOOKUP_RETRY_MAX_S = 60.0  # doubling up to this (broadcasts are not free on a building LAN)


class BacnetClient:
    """One local BACnet/IP application shared by the BACnet readers of a gateway."""

    def __init__(
        self, bind: BacnetBind = LOOPBACK, *, device_instance: int = LOCAL_DEVICE_INSTANCE,
        name: str = "facility-gateway",
    ) -> None:
        self.bind = bind
        self.port = bind.port
        self._device_instance = device_instance
        self._name = name
        self._app: Application | None = None
        self._found: dict[int, Address] = {}
        self._missing: dict[int, tuple[int, float]] = {}  # instance -> (misses, retry at)
        self._watch: asyncio.Task[None] | None = None

    @property
    def host(self) -> str:
        return self.bind.host

    async def start(self) -> None:
        self.port = self.port or free_port(socket.SOCK_DGRAM)
        device = DeviceObject(
            objectIdentifier=("device", self._device_instance), objectName=self._name,
            vendorIdentifier=VENDOR_ID,
        )
        port = NetworkPortObject(
            self.bind.link_address(self.port), objectIdentifier=("network-port", 1),
            objectName="NetworkPort-1",
        )
        if self.bind.bbmd is not None:
            bbmd_host, bbmd_port = self.bind.bbmd
            port.bacnetIPMode = IPMode.foreign
            port.fdBBMDAddress = HostNPort(f"{bbmd_host}:{bbmd_port}")
            port.fdSubscriptionLifetime = self.bind.ttl_s
        self._app = Application.from_object_list([device, port])
        await self._bound()
        log.info("BACnet/IP bound to %s port %d (broadcast %s)", self.bind.interface,
                 self.port, self.bind.broadcast if self.bind.interface.network.prefixlen < 32
                 else "none")
        if self.bind.bbmd is not None:
            self._watch = asyncio.create_task(self._watch_registration(),
                                              name="bacnet-foreign-registration")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._app is not None:
            self._app.close()
            self._app = None

    @property
    def app(self) -> Application:
        if self._app is None:
            raise RuntimeError("BacnetClient.start() first")
        return self._app

    @property
    def registration(self) -> str | None:
        """Foreign-device registration state, None when not a foreign device."""
        link = self._link()
        status = getattr(link, "bbmdRegistrationStatus", None)
        if self.bind.bbmd is None or status is None:
            return None
        return REGISTRATION_STATES.get(int(status), f"refused (result code {status})")

    async def locate(self, device_id: str, address: BacnetAddress, timeout_s: float
                     ) -> Address:
        """The device's BACnet address; AddressUnresolved when no I-Am comes back."""
        if address.how == "host":
            return Address(f"{address.host}:{address.port}")
        if address.how == "routed":
            return Address(f"{address.network}:{address.mac}")
        instance = address.device_instance
        found = self._found.get(instance)
        if found is not None:
            return found
        now = asyncio.get_running_loop().time()
        misses, retry_at = self._missing.get(instance, (0, 0.0))
        if now < retry_at:
            raise AddressUnresolved(device_id, f"no I-Am from device instance {instance}; "
                                               f"asking again in {retry_at - now:.0f} s")
        i_ams = await self.app.who_is(instance, instance, timeout=timeout_s)
        for i_am in i_ams or ():
            if int(i_am.iAmDeviceIdentifier[1]) == instance:
                self._found[instance] = i_am.pduSource
                self._missing.pop(instance, None)
                log.info("BACnet device %s (instance %d) found at %s", device_id, instance,
                         i_am.pduSource)
                return i_am.pduSource
        delay = min(LOOKUP_RETRY_MAX_S, LOOKUP_RETRY_MIN_S * 2 ** misses) if misses else 0.0
        self._missing[instance] = (misses + 1, now + delay)
        raise AddressUnresolved(device_id, f"no I-Am from device instance {instance}")

    def forget(self, address: BacnetAddress) -> None:
        """Find a device configured by instance again at its next request."""
        if address.how == "instance" and self._found.pop(address.device_instance, None):
            log.info("BACnet device instance %d stopped answering; looking for it again",
                     address.device_instance)

    def _link(self) -> Any:
        return next(iter(self.app.link_layers.values()), None)

    async def _bound(self) -> None:
        """Wait until bacpypes3 has bound its UDP sockets (it binds in background tasks and
        retries forever on an error: give up with a clear error instead)."""
        server = getattr(self._link(), "server", None)
        tasks = list(getattr(server, "_transport_tasks", None) or ())
        try:
            async with asyncio.timeout(BIND_TIMEOUT_S):
                await asyncio.gather(*tasks)
        except TimeoutError as exc:
            for task in tasks:
                task.cancel()
            self.app.close()
            self._app = None
            raise OSError(f"BACnet/IP cannot bind {self.bind.interface} port {self.port}") \
                from exc

    async def _watch_registration(self) -> None:
        last: str | None = None
        started = asyncio.get_running_loop().time()
        while True:
            state = self.registration
            if last is None and state != "registered" and \
                    asyncio.get_running_loop().time() - started > REGISTRATION_WARN_S:
                state = f"no answer yet ({state})"
            if state != last and state != "registering":
                level = logging.INFO if state == "registered" else logging.WARNING
                log.log(level, "BACnet foreign-device registration with BBMD %s:%d: %s "
                        "(time to live %d s)", *self.bind.bbmd or ("?", 0), state,
                        self.bind.ttl_s)
                last = state
            await asyncio.sleep(REGISTRATION_CHECK_S)
