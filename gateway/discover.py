"""`facility gateway discover`: probe configured BACnet/IP and Modbus TCP addresses and write
a draft site file and draft profiles a person edits before use.

BACnet: a unicast Who-Is to each HOST:PORT (never a broadcast); the I-Am names the device
instance; the device's ``objectList`` is read (whole, else element by element) and every
object of a type the profile format knows (binary, analog and multi-state inputs and
values) becomes a point named from its ``objectName``. Modbus: each HOST:PORT[/UNIT] is
probed table by table in blocks of ``PROBE_BLOCK`` registers (bits) from address 0 up to
``PROBE_LIMIT``; every register or bit the device answers for becomes a ``uint16`` or
``bool`` point named by table and address, to be retyped by hand. The draft site is checked
by loading it (``facility.site.load_site``) before this returns; a device type cannot be
discovered, so the draft says ``switchgear`` (Modbus) or ``fire_panel`` (BACnet) with an
``EDIT`` comment."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from facility.site import load_site
from gateway.bacnet import BacnetClient

log = logging.getLogger(__name__)

PROBE_BLOCK = 10
PROBE_LIMIT = 200
BACNET_TYPES = {
    "binary-input": ("binaryInput", "bool"), "binary-value": ("binaryValue", "bool"),
    "analog-input": ("analogInput", "float"), "analog-value": ("analogValue", "float"),
    "multi-state-input": ("multiStateInput", "int"),
    "multi-state-value": ("multiStateValue", "int"),
}
MODBUS_TABLES = {"coil": "read_coils", "discrete": "read_discrete_inputs",
                 "holding": "read_holding_registers", "input": "read_input_registers"}


@dataclass(slots=True)
class Draft:
    device_id: str
    address: dict[str, Any]
    profile: str
    device_type: str
    points: list[dict[str, Any]] = field(default_factory=list)


def point_name(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_]+", "_", text.strip().lower()).strip("_") or "point"
    if not base[0].isalpha():
        base = f"p_{base}"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def host_port(text: str, default_port: int) -> tuple[str, int, int | None]:
    """HOST[:PORT][/UNIT] -> (host, port, unit)."""
    m = re.fullmatch(r"([^:/]+)(?::(\d+))?(?:/(\d+))?", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not HOST[:PORT][/UNIT]")
    return m.group(1), int(m.group(2) or default_port), int(m.group(3)) if m.group(3) else None


async def discover_bacnet(client: BacnetClient, target: str, timeout_s: float) -> Draft | None:
    host, port, _ = host_port(target, 47808)
    address = Address(f"{host}:{port}")
    app = client.app
    found = await app.who_is(address=address, timeout=timeout_s)
    if not found:
        log.warning("BACnet %s:%d: no I-Am to a unicast Who-Is", host, port)
        return None
    instance = int(found[0].iAmDeviceIdentifier[1])
    device = ObjectIdentifier(f"device:{instance}")

    async def read(objid: Any, prop: str, index: int | None = None) -> Any:
        async with asyncio.timeout(timeout_s):
            return await app.read_property(address, objid, prop, index)

    try:
        objects = list(await read(device, "objectList"))
    except (TimeoutError, ErrorRejectAbortNack):
        count = int(await read(device, "objectList", 0))
        objects = [await read(device, "objectList", i) for i in range(1, count + 1)]
    draft = Draft(f"bacnet-{instance}", {"protocol": "bacnet", "host": host, "port": port,
                                         "device_instance": instance},
                  f"draft-bacnet-{instance}", "fire_panel")
    taken: set[str] = set()
    for objid in objects:
        kind = BACNET_TYPES.get(str(objid[0]))
        if kind is None:
            continue
        try:
            name = str(await read(objid, "objectName"))
        except (TimeoutError, ErrorRejectAbortNack):
            name = f"{kind[0]}_{objid[1]}"
        draft.points.append({"name": point_name(name, taken), "object_type": kind[0],
                             "instance": int(objid[1]), "type": kind[1]})
    log.info("BACnet %s:%d: device %d with %d points", host, port, instance, len(draft.points))
    return draft


async def discover_modbus(target: str, timeout_s: float) -> Draft | None:
    host, port, unit = host_port(target, 502)
    unit = 1 if unit is None else unit
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
    try:
        async with asyncio.timeout(timeout_s):
            connected = await client.connect()
        if not connected:
            log.warning("Modbus %s:%d: no connection", host, port)
            return None
        draft = Draft(f"modbus-{port}-{unit}", {"protocol": "modbus", "host": host,
                                                "port": port, "unit": unit},
                      f"draft-modbus-{port}-{unit}", "switchgear")
        for table, method in MODBUS_TABLES.items():
            for addr in await _readable(client, method, unit, timeout_s):
                point = {"name": f"{table}_{addr}", "table": table, "address": addr}
                point["type"] = "bool" if table in ("coil", "discrete") else "uint16"
                draft.points.append(point)
        log.info("Modbus %s:%d unit %d: %d readable points", host, port, unit,
                 len(draft.points))
        return draft if draft.points else None
    finally:
        client.close()


async def _readable(client: AsyncModbusTcpClient, method: str, unit: int, timeout_s: float
                    ) -> list[int]:
    """Addresses below PROBE_LIMIT the device answers for (a refused block is probed one
    address at a time)."""
    out: list[int] = []
    call = getattr(client, method)

    async def ok(address: int, count: int) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                response = await call(address, count=count, device_id=unit)
        except (TimeoutError, ModbusException):
            return False
        return not response.isError()

    for start in range(0, PROBE_LIMIT, PROBE_BLOCK):
        if await ok(start, PROBE_BLOCK):
            out += range(start, start + PROBE_BLOCK)
        else:
            out += [a for a in range(start, start + PROBE_BLOCK) if await ok(a, 1)]
    return out


def write_draft(drafts: Sequence[Draft], out: Path) -> Path:
    pdir = out / "profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    for d in drafts:
        protocol = d.address["protocol"]
        body = yaml.safe_dump({"profile": d.profile, "version": 1, "protocol": protocol,
                               "description": f"discovered at {d.device_id}; EDIT names, "
                               "types, units, tags, poll_class", "points": d.points},
                              sort_keys=False, allow_unicode=True)
        (pdir / f"{d.profile}.yaml").write_text(
            "# Draft written by `facility gateway discover`: review every point.\n" + body,
            encoding="utf-8")
    lines = ["# Draft written by `facility gateway discover`: set ids, names and device types.",
             "site: draft", "profiles_dir: profiles", "gateways:", "  - {id: gw-draft}",
             "buildings:", "  - id: building-1", "    gateway: gw-draft", "    devices:"]
    for d in drafts:
        address = yaml.safe_dump(d.address, default_flow_style=True).strip()
        lines.append(f"      - {{id: {d.device_id}, type: {d.device_type}, profile: {d.profile},"
                     f" address: {address}}}  # EDIT type: elevator | pump_set | switchgear |"
                     " fire_panel")
    site = out / "site.yaml"
    site.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_site(site)  # the draft must load as written
    return site


async def run_discover(bacnet: Sequence[str], modbus: Sequence[str], out: Path, *,
                       timeout_s: float = 2.0) -> None:
    drafts: list[Draft] = []
    if bacnet:
        client = BacnetClient()
        await client.start()
        try:
            for target in bacnet:
                if (d := await discover_bacnet(client, target, timeout_s)) is not None:
                    drafts.append(d)
        finally:
            await client.close()
    for target in modbus:
        if (d := await discover_modbus(target, timeout_s)) is not None:
            drafts.append(d)
    if not drafts:
        log.warning("nothing answered; no draft written")
        return
    site = write_draft(drafts, out)
    log.info("draft site with %d devices written to %s", len(drafts), site)
