"""Serves one simulated device over BACnet/IP with bacpypes3 (the library under BAC0).

`BacnetDeviceServer` is a bacpypes3 Application with a device object of the configured
device instance, bound to the device's own UDP port on its host, and one local object per
profile point: objectName is the point name, description the point's description, and
presentValue follows `publish`. bacpypes3 is used directly (not BAC0) so that nothing reads
a `.env` file or writes under $HOME. The application answers ReadProperty,
ReadPropertyMultiple and SubscribeCOV. Multi-state objects use the generic COV criteria:
bacpypes3's default for them expects a covIncrement they do not have.

A panel whose host is not a loopback address binds it with the prefix of the local
interface that holds it (``10.213.1.10/24``), so that it hears the subnet's broadcasts
(Who-Is) and answers them, as a panel on a building's network does; on loopback it binds the
address alone.

Misbehaviour (simulators.misbehaviour.Behaviour): `delay` answers every confirmed request
late, `mute` never answers, `segmentation: false` with a small `max_apdu` makes the device
abort a response that does not fit one APDU (segmentation-not-supported), and
`read_property_multiple: false` rejects ReadPropertyMultiple as an unrecognized service, so
that a client must fall back to ReadProperty, and the objects of `cov_refused` points
answer SubscribeCOV with a covSubscriptionFailed error. A point's `points` status sets its
object's reliability and outOfService (bacpypes3 derives statusFlags from them, and they
change at once, with a COV notification to the object's subscribers); an object whose
reliability was never set has none, as many real objects (it is optional)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from bacpypes3.apdu import ReadPropertyMultipleRequest, SubscribeCOVRequest
from bacpypes3.app import Application
from bacpypes3.errors import ExecutionError, UnrecognizedService
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject
from bacpypes3.local.binary import BinaryInputObject, BinaryValueObject
from bacpypes3.local.cov import GenericCriteria
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.multistate import MultiStateInputObject, MultiStateValueObject
from bacpypes3.local.networkport import NetworkPortObject
from psutil import net_if_addrs

from facility.profiles import BacnetPoint, BacnetProfile
from facility.site import BacnetAddress, Device
from simulators.errors import ServerStartError
from simulators.misbehaviour import NORMAL_POINT, WELL_BEHAVED, Behaviour, PointStatus
from simulators.models import PointValue

log = logging.getLogger(__name__)

VENDOR_ID = 999  # bacpypes3's identifier for sample applications
READY_TIMEOUT_S = 5.0
MAX_APDU_DEFAULT = 1024


class _SimApplication(Application):  # type: ignore[misc]
    """A bacpypes3 Application that plays its device's misbehaviour."""

    behaviour: Behaviour = WELL_BEHAVED

    async def indication(self, apdu: Any) -> None:
        b = self.behaviour
        if b.mute:
            return
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.max_apdu < MAX_APDU_DEFAULT:
            self._cap_response(apdu, b.max_apdu)
        await super().indication(apdu)

    def _cap_response(self, apdu: Any, max_apdu: int) -> None:
        """A small device cannot send more than its own maximum APDU, whatever the client
        accepts: bacpypes3 sizes a response by the client's limit only, so lower the limit
        on this request's server transaction (the segmentation check then applies it)."""
        for tr in getattr(self.asap, "serverTransactions", ()):
            if tr.invokeID == apdu.apduInvokeID and tr.pdu_address == apdu.pduSource:
                tr.maxApduLengthAccepted = min(tr.maxApduLengthAccepted or max_apdu, max_apdu)

    async def do_ReadPropertyMultipleRequest(self, apdu: ReadPropertyMultipleRequest) -> None:
        if not self.behaviour.read_property_multiple:
            raise UnrecognizedService("ReadPropertyMultiple is not supported")
        await super().do_ReadPropertyMultipleRequest(apdu)

    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        obj = self.get_object_id(apdu.monitoredObjectIdentifier)
        if obj is not None and str(obj.objectName) in self.behaviour.cov_refused:
            raise ExecutionError(errorClass="services", errorCode="covSubscriptionFailed")
        await super().do_SubscribeCOVRequest(apdu)


class _MultiStateInput(MultiStateInputObject):  # type: ignore[misc]
    _cov_criteria = GenericCriteria


class _MultiStateValue(MultiStateValueObject):  # type: ignore[misc]
    _cov_criteria = GenericCriteria


OBJECT_CLASS: dict[str, type[Any]] = {
    "binaryInput": BinaryInputObject,
    "binaryValue": BinaryValueObject,
    "analogInput": AnalogInputObject,
    "analogValue": AnalogValueObject,
    "multiStateInput": _MultiStateInput,
    "multiStateValue": _MultiStateValue,
}
BINARY = {"binaryInput", "binaryValue"}
MULTI_STATE = {"multiStateInput", "multiStateValue"}


def present_value(point: BacnetPoint, value: PointValue) -> str | int | float:
    """The presentValue a bacpypes3 object of the point's type takes for a model value."""
    if point.object_type in BINARY:
        return "active" if value else "inactive"
    if point.object_type in MULTI_STATE:
        return max(1, int(value))
    return float(value)


def _make_object(point: BacnetPoint, value: PointValue) -> Any:
    kwargs: dict[str, Any] = {
        "objectIdentifier": (point.object_type, point.instance),
        "objectName": point.name,
        "description": point.description or point.name,
        "presentValue": present_value(point, value),
    }
    if point.object_type in MULTI_STATE:
        states = max(point.enum or {1: ""})
        kwargs["numberOfStates"] = states
        if point.enum:
            kwargs["stateText"] = [point.enum.get(i, str(i)) for i in range(1, states + 1)]
    return OBJECT_CLASS[point.object_type](**kwargs)


def set_status(obj: Any, status: PointStatus) -> None:
    """Set an object's reliability and outOfService (left absent while normal and never set)
    and notify its COV subscribers when its statusFlags change: bacpypes3 computes the flags
    from those properties, so setting them does not trigger its COV detection, which
    watches statusFlags itself."""
    before = obj.statusFlags
    if status.reliability != NORMAL_POINT.reliability or obj.reliability is not None:
        obj.reliability = status.reliability
    if status.out_of_service or obj.outOfService is not None:
        obj.outOfService = status.out_of_service
    after = obj.statusFlags
    if list(after) != list(before):
        for monitor in obj._property_monitors["statusFlags"]:
            monitor(before, after)


def link_address(address: BacnetAddress) -> str:
    """``host/prefix:port`` for an address an interface of this host holds (broadcasts
    heard), ``host:port`` on loopback or when no interface holds it."""
    host = address.host or "127.0.0.1"
    ip = ipaddress.IPv4Address(host)
    if not ip.is_loopback:
        for addrs in net_if_addrs().values():
            for a in addrs:
                if a.family == socket.AF_INET and a.address == host and a.netmask:
                    iface = ipaddress.IPv4Interface(f"{host}/{a.netmask}")
                    return f"{iface.with_prefixlen}:{address.port}"
    return f"{host}:{address.port}"


class BacnetDeviceServer:
    def __init__(
        self,
        device: Device,
        initial: Mapping[str, PointValue],
        *,
        behaviour: Behaviour = WELL_BEHAVED,
    ) -> None:
        if not isinstance(device.profile, BacnetProfile) or not isinstance(
            device.config.address, BacnetAddress
        ):
            raise TypeError(f"device {device.id} is not a BACnet device")
        self.device_id = device.id
        self.profile: BacnetProfile = device.profile
        self.address: BacnetAddress = device.config.address
        self._values: dict[str, PointValue] = dict(initial)
        self._behaviour = behaviour
        self._objects: dict[str, tuple[BacnetPoint, Any]] = {}
        self._app: Application | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address.host}:{self.address.port}"

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Delay, mute, refused COV and point statuses change at once; segmentation and RPM
        support at the next start."""
        self._behaviour = behaviour
        if self._app is not None:
            self._app.behaviour = behaviour
            self._apply_point_statuses()

    def _apply_point_statuses(self) -> None:
        for name, (_, obj) in self._objects.items():
            set_status(obj, self._behaviour.points.get(name, NORMAL_POINT))

    async def start(self) -> None:
        b = self._behaviour
        device = DeviceObject(
            objectIdentifier=("device", self.address.device_instance),
            objectName=self.device_id,
            vendorIdentifier=VENDOR_ID,
            modelName=self.profile.profile,
            description=self.profile.description,
            segmentationSupported="segmentedBoth" if b.segmentation else "noSegmentation",
            maxApduLengthAccepted=b.max_apdu,
        )
        port = NetworkPortObject(
            link_address(self.address),
            objectIdentifier=("network-port", 1),
            objectName="NetworkPort-1",
            networkNumberQuality="unknown",
        )
        objects = []
        for p in self.profile.points:
            obj = _make_object(p, self._values.get(p.name, 0))
            self._objects[p.name] = (p, obj)
            objects.append(obj)
        app = _SimApplication.from_object_list([device, port, *objects])
        app.behaviour = b
        self._app = app
        self._apply_point_statuses()
        try:
            await _link_ready(app, READY_TIMEOUT_S)
        except TimeoutError as exc:
            _cancel_binding(app)
            app.close()
            self._app = None
            raise ServerStartError(self.device_id, self.endpoint, "UDP port not bound") from exc
        log.info(
            "simulator %s serving BACnet/IP on %s device %d",
            self.device_id,
            self.endpoint,
            self.address.device_instance,
        )

    async def publish(self, values: Mapping[str, PointValue]) -> None:
        """Serve these point values from now on (only changed presentValues are set)."""
        self._values.update(values)
        if self._app is None:
            return  # closed (comms loss): served again from start()
        for name, (point, obj) in self._objects.items():
            if name not in values:
                continue
            new = present_value(point, values[name])
            if obj.presentValue != new:
                obj.presentValue = new

    async def close(self) -> None:
        app, self._app = self._app, None
        if app is not None:
            app.close()
            await asyncio.sleep(0)  # let the transports finish closing
            log.info("simulator %s stopped", self.device_id)

    async def __aenter__(self) -> BacnetDeviceServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _link_ready(app: Application, timeout_s: float) -> None:
    """Wait until every link layer's UDP socket is bound.

    bacpypes3 binds in background tasks (retrying forever on an error); its datagram
    server exposes no public readiness signal, so this waits on `_local_transport_ready`,
    falling back to the link's pending transport tasks."""
    async with asyncio.timeout(timeout_s):
        for link in app.link_layers.values():
            server = getattr(link, "server", None)
            ready = getattr(server, "_local_transport_ready", None)
            if isinstance(ready, asyncio.Event):
                await ready.wait()
            elif tasks := getattr(server, "_transport_tasks", None):
                await asyncio.gather(*tasks)


def _cancel_binding(app: Application) -> None:
    """Stop bacpypes3's endless retries to bind a port that stays unavailable."""
    for link in app.link_layers.values():
        for task in getattr(getattr(link, "server", None), "_transport_tasks", None) or ():
            task.cancel()
