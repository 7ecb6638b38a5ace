"""BACnet discovery for `facility gateway discover`: which devices answer, and what objects
each one has, through the gateway's BacnetClient (so on the gateway's own network: its
bound address, its subnet's broadcasts, its BBMD registration).

``find_devices`` sends a Who-Is, global (a local broadcast, forwarded by the BBMD when the
client is registered as a foreign device) or ranged (``low``-``high`` device instances), or
unicast to one ``host:port``, and gathers the I-Ams that come back within the timeout.
``describe`` reads one device's ``objectList`` (whole, else element by element for a device
that cannot segment the whole list) and, for each object of a type the profile format
knows, its ``objectName`` and ``description``, the ``units`` of analog objects and the
``stateText`` of multi-state ones, which become the draft profile's point names, units and
enum labels."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet_client import BacnetClient

log = logging.getLogger(__name__)

BACNET_TYPES = {
    "binary-input": ("binaryInput", "bool"), "binary-value": ("binaryValue", "bool"),
    "analog-input": ("analogInput", "float"), "analog-value": ("analogValue", "float"),
    "multi-state-input": ("multiStateInput", "int"),
    "multi-state-value": ("multiStateValue", "int"),
}
UNIT_SYMBOLS = {
    "volts": "V", "kilovolts": "kV", "amperes": "A", "milliamperes": "mA", "watts": "W",
    "kilowatts": "kW", "kilowatt-hours": "kWh", "hertz": "Hz", "percent": "%",
    "degrees-celsius": "degC", "bars": "bar", "kilopascals": "kPa", "pascals": "Pa",
    "meters-per-second": "m/s", "kilograms": "kg", "hours": "h", "seconds": "s",
    "power-factor": "", "no-units": "",
}


@dataclass(slots=True)
class FoundDevice:
    instance: int
    address: Address
    name: str = ""
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def site_address(self) -> dict[str, Any]:
        """The device's address as a site file entry."""
        a = self.address
        if a.is_remotestation:  # behind a router: network number and MAC there
            return {"protocol": "bacnet", "network": int(a.addrNet),
                    "mac": _mac(a), "device_instance": self.instance}
        host, port = str(a).rsplit(":", 1) if ":" in str(a) else (str(a), "47808")
        return {"protocol": "bacnet", "host": host, "port": int(port),
                "device_instance": self.instance}


def _mac(a: Address) -> str:
    mac = bytes(a.addrAddr or b"")
    if len(mac) == 6:
        return f"{'.'.join(str(b) for b in mac[:4])}:{int.from_bytes(mac[4:], 'big')}"
    return str(mac[0]) if len(mac) == 1 else "0x" + mac.hex()


async def find_devices(client: BacnetClient, timeout_s: float, *, target: str | None = None,
                       low: int | None = None, high: int | None = None) -> list[FoundDevice]:
    """Devices answering a Who-Is (unicast to ``target``, else broadcast), by instance."""
    address = Address(target) if target else None
    i_ams = await client.app.who_is(low, high, address=address, timeout=timeout_s)
    found: dict[int, FoundDevice] = {}
    for i_am in i_ams or ():
        instance = int(i_am.iAmDeviceIdentifier[1])
        found.setdefault(instance, FoundDevice(instance, i_am.pduSource))
    return [found[i] for i in sorted(found)]


async def describe(client: BacnetClient, device: FoundDevice, timeout_s: float) -> None:
    """Read the device's object list and its objects' names, units and state texts."""
    app = client.app
    oid = ObjectIdentifier(f"device:{device.instance}")

    async def read(objid: Any, prop: str, index: int | None = None) -> Any:
        async with asyncio.timeout(timeout_s):
            return await app.read_property(device.address, objid, prop, index)

    async def optional(objid: Any, prop: str) -> Any:
        try:
            return await read(objid, prop)
        except (TimeoutError, ErrorRejectAbortNack):
            return None

    device.name = str(await optional(oid, "objectName") or "")
    try:
        objects = list(await read(oid, "objectList"))
    except (TimeoutError, ErrorRejectAbortNack) as exc:  # cannot segment it
        log.info("BACnet device %d: objectList not read whole (%r); element by element",
                 device.instance, exc)
        count = int(await read(oid, "objectList", 0))
        objects = [await read(oid, "objectList", i) for i in range(1, count + 1)]
    for objid in objects:
        kind = BACNET_TYPES.get(str(objid[0]))
        if kind is None:
            continue
        point: dict[str, Any] = {"name": str(await optional(objid, "objectName") or
                                             f"{kind[0]}_{objid[1]}"),
                                 "object_type": kind[0], "instance": int(objid[1]),
                                 "type": kind[1]}
        if (text := await optional(objid, "description")):
            point["description"] = str(text)
        if kind[1] == "float" and (units := await optional(objid, "units")) is not None:
            point["unit"] = UNIT_SYMBOLS.get(str(units), str(units))
        if kind[1] == "int" and (states := await optional(objid, "stateText")):
            point["enum"] = {i: str(s) for i, s in enumerate(states, start=1)}
        device.points.append(point)
    log.info("BACnet device %d (%s) at %s: %d objects, %d points", device.instance,
             device.name or "no name", device.address, len(objects), len(device.points))
