"""The BACnet/IP reader over bacpypes3 (with gateway.bacnet_client, gateway.bacnet_cov and
gateway.discover_bacnet, the only modules that import bacpypes3 on the gateway side).

``BacnetClient`` (gateway.bacnet_client) is the gateway's one local BACnet application,
bound where the site says, and its address book. ``BacnetReader`` reads the points of one
device, addressed by host:port, by router network and MAC, or by device instance (found
with Who-Is; looked for again once the device stops answering). At its first poll it reads
the device object once (``maxApduLengthAccepted``, ``segmentationSupported``,
``protocolServicesSupported``) and sizes its ReadPropertyMultiple requests to fit the
device's maximum APDU; a device that does not support RPM, or refuses it, is read with
ReadProperty object by object from then on; a device that aborts an RPM for want of
segmentation gets smaller requests.

Each object is read with its ``statusFlags`` and ``reliability`` (RPM; with ReadProperty the
flags, and the reliability only when the fault flag is set; an object without a
reliability property is judged by its flags): a fault, out-of-service or unreliable object
makes its point bad (gateway.bacnet_flags), and the flags go into the reading and the log
(once per change).

Where the device supports SubscribeCOV (and ``cov_lifetime_s`` > 0) every object is
followed by COV (gateway.bacnet_cov); its value then comes from notifications and is read by
request at an integrity poll every ``integrity_s``. The device's ``CovBook``
(gateway.cov_book) makes every poll ask the device something, a light ``systemStatus`` probe
when every due value came by COV, so a device that stops answering fails its polls and goes
offline as a polled one does; its notified values are then dropped. bacpypes3 raises
error, reject and abort replies as ``ErrorRejectAbortNack``, which derives from
BaseException: they are caught by name here and turned into ``ProtocolError``. Every
request runs under ``asyncio.timeout(timeout_s)``; a timeout becomes ``DeviceTimeout``.

bacpypes3 is used directly rather than through BAC0: BAC0 would read ``.env`` from the
working directory, write ``$HOME/.BAC0`` and probe the network for its address, none of
which a gateway bound to a configured address needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.basetypes import ErrorType, PropertyIdentifier, Reliability, ServicesSupported
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from facility.messages import Value, utcnow
from facility.profiles import BacnetPoint
from facility.site import BacnetAddress
from gateway.bacnet_client import BacnetClient
from gateway.bacnet_cov import CovFollower
from gateway.bacnet_flags import condition
from gateway.counters import GatewayCounters
from gateway.cov_book import CovBook
from gateway.errors import DecodeError, DeviceTimeout, ProtocolError
from gateway.reading import Reading

log = logging.getLogger(__name__)

DEFAULT_MAX_APDU = 480
APDU_OVERHEAD = 16  # complex-ack header and the device's invoke id, with margin
BYTES_PER_OBJECT = 40  # presentValue, statusFlags and reliability in an RPM ack, with margin
RPM_MAX_CHUNK = 50
STATE_PROPERTIES = ("presentValue", "statusFlags", "reliability")

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
        fits = max(1, (self.max_apdu - APDU_OVERHEAD) // BYTES_PER_OBJECT)
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
        self._book: CovBook[ObjectIdentifier] = CovBook(
            integrity_s, retry_first_s=integrity_s, retry_max_s=cov_lifetime_s)
        self._cov = CovFollower(client, device_id, self._book, lambda: self._at,
                                lifetime_s=cov_lifetime_s, counters=self._counters,
                                names={o: p.name for o, p in self._points.items()})
        self._resubscribe = False
        self._flags: dict[str, str] = {}  # point -> status flags last logged
        self.profile: DeviceProfile | None = None
        self._requests = 0

    @property
    def covered(self) -> frozenset[str]:
        """Points whose values currently come from COV notifications."""
        return frozenset(self._points[o].name for o in self._book.covered)

    async def read(self, classes: Collection[str] | None = None) -> Reading:
        self._requests = 0
        if self._address is None:
            self._address = await self._client.locate(self.device_id, self._configured,
                                                      self._timeout_s)
        try:
            return await self._read(classes)
        except DeviceTimeout:
            if self._book.lost():
                log.info("%s: not answering; values notified by COV are dropped and read "
                         "by request until it notifies again", self.device_id)
            self._resubscribe = self.profile is not None and self._following
            self._client.forget(self._configured)
            if self._configured.how == "instance":
                self._address = None
            raise

    async def _read(self, classes: Collection[str] | None) -> Reading:
        if self.profile is None:
            self.profile = await self._read_device_profile()
            self._start_cov()
        due = [o for o, p in self._points.items() if classes is None or p.poll_class in classes]
        plan = self._book.plan(due, asyncio.get_running_loop().time())
        cached = {o: self._book.sample(o) for o in plan.cached}  # before any await
        if plan.probe:  # every due value came by COV: does the device still answer?
            await self._probe()
        states = await self._read_states(list(plan.ask))
        for objid, state in states.items():
            self._book.read(objid, state.value, state.flags, state.reliability)
        for objid, sample in cached.items():
            states[objid] = _State(sample.value, sample.status_flags, sample.reliability)
        reading = self._reading(states, complete=classes is None
                                or self._all_classes <= set(classes))
        if self._resubscribe:  # answering again: it may have restarted and forgotten us
            self._resubscribe = False
            await self._cov.stop()
            self._cov.start(self._points)
        return reading

    def _reading(self, states: dict[ObjectIdentifier, _State], *, complete: bool) -> Reading:
        values: dict[str, Value] = {}
        bad: set[str] = set()
        flags: dict[str, str] = {}
        readable = 0
        for objid, state in states.items():
            point = self._points[objid]
            try:
                value = convert(point, state.value)
            except DecodeError as exc:
                log.debug("%s: %s", self.device_id, exc)
                bad.add(point.name)
                continue
            readable += 1
            cond = condition(state.flags, state.reliability)
            self._log_flags(point.name, cond.flags)
            if cond.flags:
                flags[point.name] = cond.flags
            if cond.bad:
                bad.add(point.name)
            else:
                values[point.name] = value
        if not readable and bad:
            raise ProtocolError(self.device_id, "no point could be read")
        return Reading(ts=utcnow(), values=values, bad=frozenset(bad), complete=complete,
                       requests=self._requests, flags=flags)

    def _log_flags(self, name: str, flags: str) -> None:
        """Log a point's status flags when they change (not at every poll)."""
        if self._flags.get(name, "") == flags:
            return
        if flags:
            log.warning("BACnet device %s: %s reports %s", self.device_id, name, flags)
        else:
            log.info("BACnet device %s: %s reports no fault again", self.device_id, name)
        self._flags[name] = flags

    async def close(self) -> None:
        """Cancel the COV subscriptions; the shared client owns the socket."""
        await self._cov.stop()

    @property
    def _at(self) -> Address:
        if self._address is None:
            raise DeviceTimeout(self.device_id, self._timeout_s)  # forgotten meanwhile
        return self._address

    @property
    def _following(self) -> bool:
        return bool(self._cov_lifetime_s and self.profile and self.profile.cov)

    async def _probe(self) -> None:
        """One light request: any answer, an error too, shows the device is there."""
        with contextlib.suppress(ProtocolError):
            await self._call(self._client.app.read_property(
                self._at, self._device_oid, "systemStatus"))

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
            max_apdu=int(max_apdu) if _answered(max_apdu) else DEFAULT_MAX_APDU,
            segmented=str(segmentation) in ("segmented-both", "segmented-transmit"),
            rpm=supported is None or "read-property-multiple" in supported,
            cov=supported is not None and "subscribe-cov" in supported,
        )
        log.info("BACnet device %s: max APDU %d, segmentation %s, RPM %s (%d objects per "
                 "request), COV %s", self.device_id, profile.max_apdu, profile.segmented,
                 profile.rpm, profile.rpm_chunk, profile.cov)
        return profile

    async def _read_states(self, ids: list[ObjectIdentifier]) -> dict[ObjectIdentifier, _State]:
        assert self.profile is not None
        if not self.profile.rpm:
            return await self._read_each(ids)
        out: dict[ObjectIdentifier, _State] = {}
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

    async def _read_multiple(self, chunk: list[ObjectIdentifier]
                             ) -> dict[ObjectIdentifier, _State]:
        params: list[Any] = []
        for objid in chunk:
            params += [objid, list(STATE_PROPERTIES)]
        response = await self._call(self._client.app.read_property_multiple(self._at, params))
        if not isinstance(response, list):
            raise ProtocolError(self.device_id, f"unexpected reply {response!r}")
        found: dict[tuple[ObjectIdentifier, str], Any] = {
            (ObjectIdentifier(r[0]), str(PropertyIdentifier(r[1]))): r[3] for r in response}
        return {objid: _State.of(found.get((objid, "present-value")),
                                 found.get((objid, "status-flags")),
                                 found.get((objid, "reliability")))
                for objid in chunk}

    async def _read_each(self, chunk: list[ObjectIdentifier]) -> dict[ObjectIdentifier, _State]:
        """ReadProperty: presentValue and statusFlags of each object, its reliability only
        when the fault flag is set (to say why)."""
        out: dict[ObjectIdentifier, _State] = {}
        for objid in chunk:
            value, flags = (await self._read_one(objid, "presentValue"),
                            await self._read_one(objid, "statusFlags"))
            state = _State.of(value, flags, None)
            if state.flags is not None and len(state.flags) > 1 and state.flags[1]:
                state = _State.of(value, flags, await self._read_one(objid, "reliability"))
            out[objid] = state
        return out

    async def _read_one(self, objid: ObjectIdentifier, prop: str) -> Any:
        try:
            return await self._call(self._client.app.read_property(self._at, objid, prop))
        except ProtocolError as exc:
            return exc

    async def _call(self, request: Coroutine[Any, Any, Any]) -> Any:
        self._requests += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                return await request
        except TimeoutError as exc:
            raise DeviceTimeout(self.device_id, self._timeout_s) from exc
        except ErrorRejectAbortNack as exc:  # a BaseException: must be named
            raise ProtocolError(self.device_id, f"{type(exc).__name__}: {exc}") from None

    def _start_cov(self) -> None:
        if self._following:
            self._cov.start(self._points)


@dataclass(frozen=True, slots=True)
class _State:
    """An object's presentValue as read (an error stands for itself), its status flags
    and reliability (None: absent or not read)."""

    value: Any
    flags: tuple[int, ...] | None
    reliability: str | None

    @classmethod
    def of(cls, value: Any, flags: Any, reliability: Any) -> _State:
        bits: tuple[int, ...] | None = None
        name: str | None = None
        with contextlib.suppress(TypeError, ValueError):
            bits = tuple(int(b) for b in flags) if _answered(flags) else None
        with contextlib.suppress(TypeError, ValueError):
            name = str(Reliability(reliability)) if _answered(reliability) else None
        return cls(value, bits, name)


def _answered(raw: Any) -> bool:
    """A property value, not an error, an absent property or nothing."""
    return raw is not None and not isinstance(raw, (ErrorType, ProtocolError, BaseException))


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
