"""The BACnet/IP adapter over bacpypes3: the one place bacpypes3 is imported on the gateway
side.

``BacnetClient`` is one local BACnet application (a device object and a network port) bound
to 127.0.0.1 (or the given host) on its own UDP port; it never broadcasts. ``BacnetReader``
reads the ``presentValue`` of every point of one device, addressed by unicast host:port
from the site configuration, with ReadPropertyMultiple in chunks; when the device refuses
that request it falls back to ReadProperty point by point. bacpypes3 raises error, reject
and abort replies as ``ErrorRejectAbortNack``, which derives from BaseException: they are
caught by name here and turned into ``ProtocolError``. Every request runs under
``asyncio.timeout(timeout_s)``; a timeout becomes ``DeviceTimeout``.

bacpypes3 is used directly rather than through BAC0: BAC0 would read ``.env`` from the
working directory, write ``$HOME/.BAC0`` and probe the network for its address, none of
which a gateway polling configured unicast addresses needs."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Sequence
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from facility.embedded.ports import free_port
from facility.messages import Value, utcnow
from facility.profiles import BacnetPoint
from facility.site import BacnetAddress
from gateway.errors import DecodeError, DeviceTimeout, ProtocolError
from gateway.reading import Reading

log = logging.getLogger(__name__)

RPM_CHUNK = 20  # objects per ReadPropertyMultiple; small enough for a 480-byte max APDU
LOCAL_DEVICE_INSTANCE = 4194301
VENDOR_ID = 999


class BacnetClient:
    """One local BACnet/IP application shared by the BACnet readers of a gateway."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int | None = None,
        device_instance: int = LOCAL_DEVICE_INSTANCE, name: str = "facility-gateway",
    ) -> None:
        self.host = host
        self.port = port
        self._device_instance = device_instance
        self._name = name
        self._app: Application | None = None

    async def start(self) -> None:
        self.port = self.port or free_port(socket.SOCK_DGRAM)
        device = DeviceObject(
            objectIdentifier=("device", self._device_instance), objectName=self._name,
            vendorIdentifier=VENDOR_ID,
        )
        port = NetworkPortObject(
            f"{self.host}/32:{self.port}", objectIdentifier=("network-port", 1),
            objectName="NetworkPort-1",
        )
        self._app = Application.from_object_list([device, port])
        log.info("BACnet client bound to %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None

    @property
    def app(self) -> Application:
        if self._app is None:
            raise RuntimeError("BacnetClient.start() first")
        return self._app


class BacnetReader:
    """Reads every point of one BACnet device through a shared ``BacnetClient``."""

    def __init__(
        self, client: BacnetClient, device_id: str, address: BacnetAddress,
        points: Sequence[BacnetPoint], *, timeout_s: float,
    ) -> None:
        self.device_id = device_id
        self._client = client
        self._address = Address(f"{address.host}:{address.port}")
        self._points = {ObjectIdentifier(f"{p.object_type}:{p.instance}"): p for p in points}
        self._timeout_s = timeout_s

    async def read(self) -> Reading:
        values: dict[str, Value] = {}
        bad: set[str] = set()
        ids = list(self._points)
        for i in range(0, len(ids), RPM_CHUNK):
            chunk = ids[i : i + RPM_CHUNK]
            try:
                results = await self._read_multiple(chunk)
            except ProtocolError as exc:
                log.debug("%s: ReadPropertyMultiple refused (%s); reading one by one",
                          self.device_id, exc.reason)
                results = await self._read_each(chunk)
            for objid, raw in results.items():
                self._store(self._points[objid], raw, values, bad)
        if not values and bad:
            raise ProtocolError(self.device_id, "no point could be read")
        return Reading(ts=utcnow(), values=values, bad=frozenset(bad))

    async def close(self) -> None:
        """Nothing to close per device: the shared client owns the socket."""

    async def _read_multiple(self, chunk: list[ObjectIdentifier]) -> dict[ObjectIdentifier, Any]:
        params: list[Any] = []
        for objid in chunk:
            params += [objid, ["presentValue"]]
        response = await self._call(self._client.app.read_property_multiple(self._address, params))
        if not isinstance(response, list):
            raise ProtocolError(self.device_id, f"unexpected reply {response!r}")
        found = {ObjectIdentifier(r[0]): r[3] for r in response}
        return {objid: found.get(objid) for objid in chunk}

    async def _read_each(self, chunk: list[ObjectIdentifier]) -> dict[ObjectIdentifier, Any]:
        out: dict[ObjectIdentifier, Any] = {}
        for objid in chunk:
            try:
                out[objid] = await self._call(
                    self._client.app.read_property(self._address, objid, "presentValue"))
            except ProtocolError as exc:
                out[objid] = exc
        return out

    async def _call(self, request: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await request
        except TimeoutError as exc:
            raise DeviceTimeout(self.device_id, self._timeout_s) from exc
        except ErrorRejectAbortNack as exc:  # a BaseException: must be named
            raise ProtocolError(self.device_id, f"{type(exc).__name__}: {exc}") from None

    def _store(self, point: BacnetPoint, raw: Any, values: dict[str, Value], bad: set[str]) -> None:
        try:
            values[point.name] = convert(point, raw)
        except DecodeError as exc:
            log.debug("%s: %s", self.device_id, exc)
            bad.add(point.name)


def convert(point: BacnetPoint, raw: Any) -> Value:
    """A bacpypes3 property value as the point's JSON type; DecodeError if it is not one."""
    if raw is None or isinstance(raw, (ErrorType, ProtocolError, BaseException)):
        raise DecodeError(point.name, f"not read: {raw!r}")
    try:
        if point.type == "bool":  # BinaryPV active (1) / inactive (0), or a Boolean
            return bool(int(raw))
        if point.type == "int":
            return int(raw)
        if point.type == "string":
            return str(raw)
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise DecodeError(point.name, f"{raw!r} is not a {point.type}") from exc
    if not math.isfinite(value):
        raise DecodeError(point.name, f"value is {value}")
    return value
