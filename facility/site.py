"""Site configuration: one YAML file describes a site, its gateways, buildings and devices
with their protocol address and profile. Loading validates everything and resolves each
device's profile; a mistake is refused with the file and the path of the entry."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facility.config_errors import ConfigError, from_validation, read_yaml
from facility.profiles import BacnetProfile, ModbusProfile, load_profile
from facility.site_network import BACNET_PORT, BacnetNetwork, RtuLineConfig

ID = r"^[a-z0-9_-]+$"
DeviceType = Literal[
    "elevator", "pump_set", "switchgear", "fire_panel", "leak_detector", "gas_detector"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusAddress(_Strict):
    protocol: Literal["modbus"] = "modbus"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=255)


class ModbusRtuAddress(_Strict):
    """A unit on one of the gateway's RTU lines (``lines`` of its gateway)."""

    protocol: Literal["modbus-rtu"] = "modbus-rtu"
    line: str = Field(pattern=ID)
    unit: int = Field(ge=1, le=247)


class BacnetAddress(_Strict):
    """A BACnet device: at ``host[:port]``; or behind a BACnet router, at ``network`` (the
    remote network number) and ``mac`` (its MAC address there: a number such as ``5`` or
    ``0x0a`` for MS/TP, ``ip:port`` for BACnet/IP); or, with neither, found by its
    ``device_instance`` with Who-Is/I-Am. A ``port`` without a host means 127.0.0.1 (the
    demo and tests, one UDP port per simulated panel)."""

    protocol: Literal["bacnet"] = "bacnet"
    host: str | None = None
    port: int = Field(default=BACNET_PORT, ge=1, le=65535)
    device_instance: int = Field(ge=0, le=4194302)
    network: int | None = Field(default=None, ge=1, le=65534)
    mac: str | None = Field(default=None, pattern=r"^(\d{1,3}|0x[0-9a-fA-F]{2,12}|[0-9.]+:\d+)$")

    @model_validator(mode="before")
    @classmethod
    def _loopback_port(cls, data: object) -> object:
        if isinstance(data, dict) and "port" in data and "host" not in data \
                and "network" not in data:
            return {**data, "host": "127.0.0.1"}
        return data

    @model_validator(mode="after")
    def _one_way(self) -> BacnetAddress:
        if (self.network is None) != (self.mac is None):
            raise ValueError("a routed address needs both network and mac")
        if self.network is not None and self.host is not None:
            raise ValueError("give host (same network) or network and mac (routed), not both")
        return self

    @property
    def how(self) -> Literal["host", "routed", "instance"]:
        if self.host is not None:
            return "host"
        return "routed" if self.network is not None else "instance"


Address = Annotated[ModbusAddress | ModbusRtuAddress | BacnetAddress,
                    Field(discriminator="protocol")]


class ModbusOptions(_Strict):
    """Per-device read planning overrides for quirky Modbus devices."""

    fill: int = Field(default=10, ge=-1, le=124,
                      description="unused registers (or bits) bridged to merge two reads")
    max_registers: int = Field(default=125, ge=1, le=125, description="per request")
    max_bits: int = Field(default=2000, ge=1, le=2000, description="per request")
    one_request_per_point: bool = False
    pause_ms: float = Field(default=0.0, ge=0, le=10_000, description="between requests")
    busy_retries: int = Field(default=2, ge=0, le=10,
                              description="retries of a request answered 'busy' (code 6)")


class DeviceConfig(_Strict):
    id: str = Field(pattern=ID)
    name: str = ""
    type: DeviceType
    profile: str = Field(pattern=ID)
    address: Address
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    modbus: ModbusOptions | None = None

    @model_validator(mode="after")
    def _timeout_fits(self) -> DeviceConfig:
        if self.timeout_s > self.poll_interval_s * 10:
            raise ValueError("timeout_s is longer than ten poll intervals")
        if self.modbus is not None and not isinstance(self.address,
                                                      (ModbusAddress, ModbusRtuAddress)):
            raise ValueError("modbus options given for a device that is not a Modbus device")
        return self

    @property
    def modbus_options(self) -> ModbusOptions:
        return self.modbus or ModbusOptions()


class BuildingConfig(_Strict):
    id: str = Field(pattern=ID)
    name: str = ""
    gateway: str = Field(pattern=ID)
    devices: tuple[DeviceConfig, ...] = ()


class PollClasses(_Strict):
    """Poll period of each point class, in multiples of the device's poll_interval_s."""

    fast: int = Field(default=1, ge=1, le=3600)
    normal: int = Field(default=5, ge=1, le=3600)
    slow: int = Field(default=60, ge=1, le=3600)


class BufferConfig(_Strict):
    """The gateway's on-disk store-and-forward queue (SQLite)."""

    path: str = Field(default="", description="file; default <state dir>/gateway-<id>.sqlite")
    max_messages: int = Field(default=1_000_000, ge=100,
                              description="bulk telemetry beyond this is dropped oldest first")
    max_bytes: int = Field(default=1 << 30, ge=64 * 1024,
                           description="... and beyond this many bytes (topics and payloads)")
    replay_rate_per_s: float = Field(
        default=2000.0, gt=0, description="queued messages replayed per second at most, "
                                          "beside the live ones")
    puback_timeout_s: float = Field(default=10.0, gt=0, le=600)
    node_stall_s: float = Field(
        default=5.0, gt=0, le=600,
        description="with several broker nodes: a node that acknowledges nothing this long "
                    "(publishes waiting) is left for the next one")


class GatewayConfig(_Strict):
    id: str = Field(pattern=ID)
    report_period_s: float = Field(default=30.0, gt=0)
    offline_after_failures: int = Field(default=3, ge=1)
    heartbeat_s: float = Field(default=10.0, gt=0, le=3600,
                               description="the gateway's online status is repeated this often")
    offline_after_heartbeats: int = Field(
        default=3, ge=2, le=100, description="the rules judge the gateway offline after this "
                                             "many heartbeat periods without a live message")
    poll_classes: PollClasses = PollClasses()
    buffer: BufferConfig = BufferConfig()
    metrics_port: int | None = Field(default=None, ge=0, le=65535,
                                     description="Prometheus metrics on 127.0.0.1 (0: any)")
    cov_lifetime_s: int = Field(default=300, ge=0, le=86400,
                                description="BACnet COV subscription lifetime; 0: no COV")
    integrity_poll_s: float = Field(
        default=60.0, ge=1, le=86400,
        description="BACnet points followed by COV are also read by request this often")
    bacnet: BacnetNetwork | None = Field(default=None,
                                         description="BACnet/IP port; omit: loopback")
    lines: tuple[RtuLineConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_lines(self) -> GatewayConfig:
        ids = [line.id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("an RTU line id appears twice")
        paths = [line.endpoint for line in self.lines]
        if len(set(paths)) != len(paths):
            raise ValueError("two RTU lines use the same serial port or server")
        return self

    def line(self, line_id: str) -> RtuLineConfig:
        for line in self.lines:
            if line.id == line_id:
                return line
        raise KeyError(line_id)


class RuleOverride(_Strict):
    """Site-level tuning of a built-in rule (the rule engine owns the rule itself)."""

    on_delay_s: float | None = Field(default=None, ge=0)
    off_delay_s: float | None = Field(default=None, ge=0)
    enabled: bool = True


class SiteConfig(_Strict):
    site: str = Field(pattern=ID)
    name: str = ""
    profiles_dir: str = "../profiles"
    gateways: tuple[GatewayConfig, ...]
    buildings: tuple[BuildingConfig, ...]
    rules: dict[str, RuleOverride] = {}

    @model_validator(mode="after")
    def _check_references(self) -> SiteConfig:
        gateways = {g.id: g for g in self.gateways}
        if len(gateways) != len(self.gateways):
            raise ValueError("a gateway id appears twice")
        device_ids: set[str] = set()
        endpoints: dict[tuple[str, ...], str] = {}
        for b in self.buildings:
            gw = gateways.get(b.gateway)
            if gw is None:
                raise ValueError(f"building {b.id} names gateway {b.gateway}, which is not defined")
            for d in b.devices:
                if d.id in device_ids:
                    raise ValueError(f"device id {d.id} appears twice")
                device_ids.add(d.id)
                key = _endpoint_key(d, gw)
                if key in endpoints:
                    raise ValueError(f"devices {endpoints[key]} and {d.id} share address {key}")
                endpoints[key] = d.id
        return self


def check_gateway_reach(site: Site, gateway_id: str) -> None:
    """Refuse (ConfigError, with each entry's path) a site whose gateway ``gateway_id`` would
    poll a BACnet device off loopback from its BACnet port on loopback (no ``bacnet.address``
    or ``bacnet.interface``): every poll would time out. Checked where the gateway loads the
    site, not in the site model: the simulators, ingest, rules and the API read the same file
    and serve or store those devices wherever they are."""
    gw = site.gateway(gateway_id)
    if gw.bacnet is not None and (gw.bacnet.interface or gw.bacnet.address):
        return
    problems = []
    for bi, b in enumerate(site.config.buildings):
        for di, d in enumerate(b.devices):
            a = d.address
            if b.gateway != gateway_id or not isinstance(a, BacnetAddress) \
                    or a.how != "host" or _is_loopback(a.host or ""):
                continue
            problems.append(
                f"buildings[{bi}].devices[{di}].address.host: device {d.id} is at {a.host}, "
                f"off loopback, but gateway {gw.id} has its BACnet port on 127.0.0.1: add "
                "bacnet.interface (e.g. eth0) or bacnet.address (e.g. 192.168.10.5/24) to "
                f"gateway {gw.id}, the interface on that device's network")
    if problems:
        raise ConfigError(site.path, problems)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _endpoint_key(d: DeviceConfig, gw: GatewayConfig) -> tuple[str, ...]:
    """What must be unique: host, port and unit; line and unit; a BACnet device instance
    found by Who-Is (unique in its gateway's internetwork)."""
    a = d.address
    if isinstance(a, ModbusAddress):
        return (a.protocol, a.host, str(a.port), str(a.unit))
    if isinstance(a, ModbusRtuAddress):
        if a.line not in {line.id for line in gw.lines}:
            raise ValueError(f"device {d.id} names RTU line {a.line}, which gateway {gw.id} "
                             "does not define")
        return (a.protocol, gw.id, a.line, str(a.unit))
    if a.how == "instance":
        net = gw.bacnet
        if net is None or not (net.interface or net.address or net.foreign_device):
            raise ValueError(f"device {d.id} is addressed by device instance alone: gateway "
                             f"{gw.id} needs bacnet.address or bacnet.interface (to broadcast "
                             "Who-Is) or bacnet.foreign_device")
        return (a.protocol, gw.id, "instance", str(a.device_instance))
    where = a.host if a.how == "host" else f"{a.network}:{a.mac}"
    return (a.protocol, str(where), str(a.port), str(a.device_instance))


@dataclass(frozen=True, slots=True)
class Device:
    """A device of the loaded site, with its building, gateway and resolved profile."""

    config: DeviceConfig
    building: str
    gateway: str
    profile: ModbusProfile | BacnetProfile

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def type(self) -> str:
        return self.config.type


@dataclass(frozen=True, slots=True)
class Site:
    config: SiteConfig
    devices: dict[str, Device]
    path: Path

    @property
    def id(self) -> str:
        return self.config.site

    def gateway(self, gateway_id: str) -> GatewayConfig:
        for g in self.config.gateways:
            if g.id == gateway_id:
                return g
        raise KeyError(gateway_id)

    def devices_of_gateway(self, gateway_id: str) -> list[Device]:
        return [d for d in self.devices.values() if d.gateway == gateway_id]


def parse_site(raw: object, path: Path) -> SiteConfig:
    try:
        return SiteConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise from_validation(path, exc) from exc


def load_site(path: Path | str, profiles_dir: Path | None = None) -> Site:
    """Load a site file and every profile it names; ConfigError on any mistake."""
    path = Path(path)
    raw = read_yaml(path)
    config = parse_site(raw, path)
    pdir = profiles_dir or (path.parent / config.profiles_dir).resolve()
    cache: dict[str, ModbusProfile | BacnetProfile] = {}
    devices: dict[str, Device] = {}
    problems: list[str] = []
    for bi, b in enumerate(config.buildings):
        for di, d in enumerate(b.devices):
            where = f"buildings[{bi}].devices[{di}]"
            if d.profile not in cache:
                ppath = pdir / f"{d.profile}.yaml"
                if not ppath.exists():
                    problems.append(f"{where}.profile: no profile file {ppath}")
                    continue
                cache[d.profile] = load_profile(ppath)
            prof = cache[d.profile]
            if prof.protocol != d.address.protocol.removesuffix("-rtu"):
                problems.append(
                    f"{where}.address: profile {d.profile} speaks {prof.protocol}, "
                    f"the address is {d.address.protocol}"
                )
                continue
            devices[d.id] = Device(config=d, building=b.id, gateway=b.gateway, profile=prof)
    if problems:
        raise ConfigError(path, problems)
    return Site(config=config, devices=devices, path=path)
