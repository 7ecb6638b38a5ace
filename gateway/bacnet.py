"""The BACnet/IP reader over bacpypes3 (with gateway.bacnet_client and
gateway.discover_bacnet, the only modules that import bacpypes3 on the gateway side).

``BacnetClient`` (gateway.bacnet_client) is the gateway's one local BACnet application,
bound where the site says, and its address book. ``BacnetReader`` reads the
``presentValue`` of the points of one device, addressed by host:port, by router network and
MAC, or by device instance (found with Who-Is; looked for again once the device stops
answering). At its first poll it reads the device object once
(``maxApduLengthAccepted``, ``segmentationSupported``, ``protocolServicesSupported``) and
sizes its ReadPropertyMultiple requests to fit the device's maximum APDU; a device that does
not support RPM, or refuses it, is read with ReadProperty object by object from then on; a
device that aborts an RPM for want of segmentation gets smaller requests. Where the device
supports SubscribeCOV (and ``cov_lifetime_s`` > 0) every object gets a COV subscription
(renewed by bacpypes3 before its lifetime ends): its value then comes from notifications,
and the object is still read by request at an integrity poll every ``integrity_s``; a
subscription that fails falls back to polling that object. bacpypes3 raises error, reject
and abort replies as ``ErrorRejectAbortNack``, which derives from BaseException: they are
caught by name here and turned into ``ProtocolError``. Every request runs under
``asyncio.timeout(timeout_s)``; a timeout becomes ``DeviceTimeout``.

bacpypes3 is used directly rather than through BAC0: BAC0 would read ``.env`` from the
working directory, write ``$HOME/.BAC0`` and probe the network for its address, none of
which a gateway bound to a configured address needs."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.basetypes import ErrorType, PropertyIdentifier, ServicesSupported
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from facility.messages import Value, utcnow
from facility.profiles import BacnetPoint
from facility.site import BacnetAddress
from gateway.bacnet_client import BacnetClient
from gateway.counters import GatewayCounters
from gateway.errors import DecodeError, DeviceTimeout, ProtocolError
from gateway.reading import Reading

log = logging.getLogger(__name__)

DEFAULT_MAX_APDU = 480
APDU_OVERHEAD = 16  # complex-ack header and the device's invoke id, with margin
BYTES_PER_VALUE = 24  # one object's presentValue in an RPM ack, with margin
RPM_MAX_CHUNK = 50
COV_RETRY_MIN_S = 30.0

__all__ = ["BacnetClient", "BacnetReader", "DeviceProfile", "convert"]


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What the device object says of itself, read once per reader."""

    max_apdu: int
    segmented: bool
    rpm: bool
    cov: bool

    @property
    def rpm_chunk(self) -> int:
        """Objects per ReadPropertyMultiple that fit one APDU (segmented devices: at most
        ``RPM_MAX_CHUNK``)."""
        fits = max(1, (self.max_apdu - APDU_OVERHEAD) // BYTES_PER_VALUE)
        return min(RPM_MAX_CHUNK, fits * (4 if self.segmented else 1))


class BacnetReader:
    """Reads the points of one BACnet device through a shared ``BacnetClient``."""

    def __init__(
        self, client: BacnetClient, device_id: str, address: BacnetAddress,
        points: Sequence[BacnetPoint], *, timeout_s: float,
        counters: GatewayCounters | None = None, cov_lifetime_s: int = 0,
        integrity_s: float = 60.0,
    ) -> None:
        self.device_id = device_id
        self._client = client
        self._configured = address
        self._address: Address | None = None  # located at the first request
        self._device_oid = ObjectIdentifier(f"device:{address.device_instance}")
        self._points = {ObjectIdentifier(f"{p.object_type}:{p.instance}"): p for p in points}
        self._all_classes = frozenset(p.poll_class for p in points)
        self._timeout_s = timeout_s
        self._counters = counters or GatewayCounters()
        self._cov_lifetime_s = cov_lifetime_s
        self._integrity_s = integrity_s
        self.profile: DeviceProfile | None = None
        self._cov_values: dict[ObjectIdentifier, Any] = {}  # objects with a live subscription
        self._cov_tasks: list[asyncio.Task[None]] = []
        self._last_integrity = -math.inf
        self._requests = 0

    @property
    def covered(self) -> frozenset[str]:
        """Points whose values currently come from COV notifications."""
        return frozenset(self._points[o].name for o in self._cov_values)

    async def read(self, classes: Collection[str] | None = None) -> Reading:
        self._requests = 0
        if self._address is None:
            self._address = await self._client.locate(self.device_id, self._configured,
                                                      self._timeout_s)
        try:
            return await self._read(classes)
        except DeviceTimeout:
            self._client.forget(self._configured)
            if self._configured.how == "instance":
                self._address = None
            raise

    async def _read(self, classes: Collection[str] | None) -> Reading:
        if self.profile is None:
            self.profile = await self._read_device_profile()
            self._start_cov()
        now = asyncio.get_running_loop().time()
        integrity = now - self._last_integrity >= self._integrity_s
        if integrity:
            self._last_integrity = now
        values: dict[str, Value] = {}
        bad: set[str] = set()
        due = [o for o, p in self._points.items() if classes is None or p.poll_class in classes]
        ask = [o for o in due if integrity or o not in self._cov_values]
        for objid in due:
            if objid not in ask:
                self._store(self._points[objid], self._cov_values[objid], values, bad)
        for objid, raw in (await self._read_values(ask)).items():
            self._store(self._points[objid], raw, values, bad)
            if objid in self._cov_values and raw is not None:
                self._cov_values[objid] = raw
        if not values and bad:
            raise ProtocolError(self.device_id, "no point could be read")
        complete = classes is None or self._all_classes <= set(classes)
        return Reading(ts=utcnow(), values=values, bad=frozenset(bad), complete=complete,
                       requests=self._requests)

    async def close(self) -> None:
        """Cancel the COV subscriptions; the shared client owns the socket."""
        for task in self._cov_tasks:
            task.cancel()
        await asyncio.gather(*self._cov_tasks, return_exceptions=True)
        self._cov_tasks.clear()

    @property
    def _at(self) -> Address:
        if self._address is None:
            raise DeviceTimeout(self.device_id, self._timeout_s)  # forgotten meanwhile
        return self._address

    async def _read_device_profile(self) -> DeviceProfile:
        async def prop(name: str) -> Any:
            try:
                return await self._call(self._client.app.read_property(
                    self._at, self._device_oid, name))
            except ProtocolError:
                return None

        max_apdu = await prop("maxApduLengthAccepted")
        segmentation = await prop("segmentationSupported")
        services = await prop("protocolServicesSupported")
        supported = _services(services)
        profile = DeviceProfile(
            max_apdu=int(max_apdu) if max_apdu else DEFAULT_MAX_APDU,
            segmented=str(segmentation) in ("segmented-both", "segmented-transmit"),
            rpm=supported is None or "read-property-multiple" in supported,
            cov=supported is not None and "subscribe-cov" in supported,
        )
        log.info("BACnet device %s: max APDU %d, segmentation %s, RPM %s (%d objects per "
                 "request), COV %s", self.device_id, profile.max_apdu, profile.segmented,
                 profile.rpm, profile.rpm_chunk, profile.cov)
        return profile

    async def _read_values(self, ids: list[ObjectIdentifier]) -> dict[ObjectIdentifier, Any]:
        assert self.profile is not None
        if not self.profile.rpm:
            return await self._read_each(ids)
        out: dict[ObjectIdentifier, Any] = {}
        size = self.profile.rpm_chunk
        for i in range(0, len(ids), size):
            chunk = ids[i : i + size]
            try:
                out.update(await self._read_multiple(chunk))
            except ProtocolError as exc:
                if self.profile.rpm and "segmentation" not in exc.reason.lower():
                    log.info("%s: ReadPropertyMultiple refused (%s); using ReadProperty",
                             self.device_id, exc.reason)
                    self.profile = replace(self.profile, rpm=False)
                else:
                    log.info("%s: ReadPropertyMultiple too large (%s); %d objects per request",
                             self.device_id, exc.reason, max(1, size // 2))
                    self.profile = replace(self.profile, max_apdu=self.profile.max_apdu // 2,
                                           segmented=False)
                out.update(await self._read_each(chunk))
        return out

    async def _read_multiple(self, chunk: list[ObjectIdentifier]) -> dict[ObjectIdentifier, Any]:
        params: list[Any] = []
        for objid in chunk:
            params += [objid, ["presentValue"]]
        response = await self._call(self._client.app.read_property_multiple(self._at, params))
        if not isinstance(response, list):
            raise ProtocolError(self.device_id, f"unexpected reply {response!r}")
        found = {ObjectIdentifier(r[0]): r[3] for r in response}
        return {objid: found.get(objid) for objid in chunk}

    async def _read_each(self, chunk: list[ObjectIdentifier]) -> dict[ObjectIdentifier, Any]:
        out: dict[ObjectIdentifier, Any] = {}
        for objid in chunk:
            try:
                out[objid] = await self._call(
                    self._client.app.read_property(self._at, objid, "presentValue"))
            except ProtocolError as exc:
                out[objid] = exc
        return out

    async def _call(self, request: Coroutine[Any, Any, Any]) -> Any:
        self._requests += 1
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

    # COV

    def _start_cov(self) -> None:
        if not (self._cov_lifetime_s and self.profile and self.profile.cov):
            return
        for objid in self._points:
            self._cov_tasks.append(asyncio.create_task(
                self._follow(objid), name=f"cov[{self.device_id}:{objid}]"))

    async def _follow(self, objid: ObjectIdentifier) -> None:
        """Keep one object's subscription (bacpypes3 renews it before its lifetime ends);
        on any failure fall back to polling the object and try again a lifetime later."""
        app = self._client.app
        while True:
            try:
                async with app.change_of_value(self._at, objid, None, False,
                                               self._cov_lifetime_s) as sub:
                    while True:
                        prop, value = await sub.get_value()
                        if prop == PropertyIdentifier.presentValue:
                            self._counters.cov_notifications += 1
                            self._cov_values[objid] = value
            except asyncio.CancelledError:
                self._cov_values.pop(objid, None)
                raise
            except (Exception, ErrorRejectAbortNack) as exc:
                self._cov_values.pop(objid, None)
                log.debug("%s: COV on %s not available (%r); polling it", self.device_id,
                          objid, exc)
            await asyncio.sleep(max(COV_RETRY_MIN_S, self._cov_lifetime_s))


def _services(raw: Any) -> set[str] | None:
    """Names of the services a ServicesSupported bit string sets (None: unknown)."""
    if raw is None:
        return None
    try:
        bits = list(raw)
    except TypeError:
        return None
    return {name for name, bit in ServicesSupported._bitstring_names.items()
            if bit < len(bits) and bits[bit]}


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
