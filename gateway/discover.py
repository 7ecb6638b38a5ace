"""`facility gateway discover`: find the devices a gateway can reach and write a draft site
file and draft profiles a person edits before use.

BACnet (gateway.discover_bacnet), through a BacnetClient bound like the gateway (its site
entry's ``bacnet:`` settings, or loopback): a global or ranged Who-Is broadcast on the
gateway's subnet (through its BBMD when it registers as a foreign device) and/or a unicast
Who-Is to each given ``host:port``; then each device's object list, object names,
descriptions, units and state texts become a profile. Modbus (gateway.discover_modbus):
each ``host:port[/unit]`` (with no unit and a ``units`` range, every unit id in it), and
each RTU line of the gateway scanned over ``units``; every register or bit a unit answers
for becomes a ``uint16`` or ``bool`` point named by table and address. The draft site has
one gateway (``gw-draft``, with the source gateway's BACnet settings and lines) and one
building, and is checked by loading it before this returns; a device type cannot be
discovered, so the draft says ``switchgear`` (Modbus) or ``fire_panel`` (BACnet) with an
``EDIT`` comment. What was found is logged, one line per device, and summed up at the end."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facility.site import GatewayConfig, load_site
from gateway.bacnet_client import BacnetClient
from gateway.bacnet_net import LOOPBACK, BacnetBind
from gateway.discover_bacnet import FoundDevice, describe, find_devices
from gateway.discover_modbus import scan_line, scan_tcp

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Draft:
    device_id: str
    address: dict[str, Any]
    profile: str
    device_type: str
    points: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""


@dataclass(frozen=True, slots=True)
class Targets:
    """What to look for: BACnet ``who_is`` ("" global, "LOW-HIGH" ranged, None: no
    broadcast) and unicast ``bacnet`` hosts; Modbus TCP ``modbus`` hosts; the gateway's RTU
    lines (``gateway.lines``) over ``units``."""

    bacnet: Sequence[str] = ()
    modbus: Sequence[str] = ()
    who_is: str | None = None
    units: Sequence[int] | None = None
    gateway: GatewayConfig | None = None
    bind: BacnetBind = LOOPBACK


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


def unit_range(text: str) -> list[int]:
    """'1-32' or '5' -> unit ids."""
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not UNIT or LOW-HIGH")
    low, high = int(m.group(1)), int(m.group(2) or m.group(1))
    return list(range(low, high + 1))


def bacnet_draft(found: FoundDevice) -> Draft:
    taken: set[str] = set()
    points = [{**p, "name": point_name(p["name"], taken)} for p in found.points]
    return Draft(f"bacnet-{found.instance}", found.site_address, f"draft-bacnet-{found.instance}",
                 "fire_panel", points, found.name)


async def discover_bacnet(targets: Targets, timeout_s: float) -> list[Draft]:
    client = BacnetClient(targets.bind)
    await client.start()
    try:
        devices: dict[int, FoundDevice] = {}
        if targets.who_is is not None:
            low, high = (None, None)
            if targets.who_is:
                units = unit_range(targets.who_is)
                low, high = units[0], units[-1]
            for d in await find_devices(client, timeout_s, low=low, high=high):
                devices.setdefault(d.instance, d)
            log.info("Who-Is %s: %d devices answered", targets.who_is or "(all)", len(devices))
        for target in targets.bacnet:
            host, port, _ = host_port(target, 47808)
            answered = await find_devices(client, timeout_s, target=f"{host}:{port}")
            if not answered:
                log.warning("BACnet %s:%d: no I-Am to a unicast Who-Is", host, port)
            for d in answered:
                devices.setdefault(d.instance, d)
        drafts = []
        for d in devices.values():
            try:
                await describe(client, d, timeout_s)
            except Exception as exc:  # one device's edge: log, go on with the others
                log.warning("BACnet device %d at %s: cannot read its objects (%r)",
                            d.instance, d.address, exc)
                continue
            drafts.append(bacnet_draft(d))
        return drafts
    finally:
        await client.close()


def modbus_draft(device_id: str, address: dict[str, Any], points: list[dict[str, Any]]
                 ) -> Draft:
    return Draft(device_id, address, f"draft-{device_id}", "switchgear", points)


async def discover_modbus(targets: Targets, timeout_s: float) -> list[Draft]:
    drafts: list[Draft] = []
    for target in targets.modbus:
        host, port, unit = host_port(target, 502)
        units = [unit] if unit is not None else list(targets.units or [1])
        for u, points in (await scan_tcp(host, port, units, timeout_s)).items():
            drafts.append(modbus_draft(f"modbus-{port}-{u}", {
                "protocol": "modbus", "host": host, "port": port, "unit": u}, points))
    for line in targets.gateway.lines if targets.gateway else ():
        units = list(targets.units or range(1, 33))
        for u, points in (await scan_line(line, units)).items():
            drafts.append(modbus_draft(f"{line.id}-unit-{u}", {
                "protocol": "modbus-rtu", "line": line.id, "unit": u}, points))
    return [d for d in drafts if d.points]


def write_draft(drafts: Sequence[Draft], out: Path, gateway: GatewayConfig | None = None
                ) -> Path:
    pdir = out / "profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    for d in drafts:
        protocol = d.address["protocol"].removesuffix("-rtu")
        about = f"{d.description}: " if d.description else ""
        body = yaml.safe_dump({"profile": d.profile, "version": 1, "protocol": protocol,
                               "description": f"{about}discovered at {d.device_id}; EDIT "
                               "names, types, units, tags, poll_class", "points": d.points},
                              sort_keys=False, allow_unicode=True)
        (pdir / f"{d.profile}.yaml").write_text(
            "# Draft written by `facility gateway discover`: review every point.\n" + body,
            encoding="utf-8")
    gw: dict[str, Any] = {"id": "gw-draft"}
    if gateway is not None:
        gw.update(gateway.model_dump(include={"bacnet", "lines"}, exclude_none=True,
                                     exclude_defaults=True))
    lines = ["# Draft written by `facility gateway discover`: set ids, names and device types.",
             "site: draft", "profiles_dir: profiles", "gateways:",
             "  - " + yaml.safe_dump(gw, default_flow_style=True, width=10_000).strip(),
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
                       timeout_s: float = 2.0, targets: Targets | None = None) -> None:
    targets = targets or Targets()
    targets = Targets(tuple(targets.bacnet) + tuple(bacnet), tuple(targets.modbus) +
                      tuple(modbus), targets.who_is, targets.units, targets.gateway,
                      targets.bind)
    drafts: list[Draft] = []
    if targets.bacnet or targets.who_is is not None:
        drafts += await discover_bacnet(targets, timeout_s)
    drafts += await discover_modbus(targets, timeout_s)
    if not drafts:
        log.warning("nothing answered; no draft written")
        return
    site = write_draft(drafts, out, targets.gateway)
    for d in drafts:
        log.info("found %s at %s: %d points", d.device_id,
                 yaml.safe_dump(d.address, default_flow_style=True).strip(), len(d.points))
    log.info("draft site with %d devices written to %s", len(drafts), site)
