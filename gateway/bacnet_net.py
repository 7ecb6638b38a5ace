"""Where the gateway's BACnet/IP application binds: the site's ``bacnet:`` settings of one
gateway resolved on this host at start.

``resolve_bind`` turns an interface name into its IPv4 address and prefix (read from the
host's interfaces with psutil), keeps a configured ``address/prefix`` as given, and falls
back to loopback when neither is set (the demo and tests: a free UDP port of 127.0.0.1). An
interface that does not exist or has no IPv4 address, or an address that no interface of
this host holds, is a ``ConfigError`` naming the site file and the entry: a gateway bound
to the wrong address would only ever log timeouts."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

from facility.config_errors import ConfigError
from facility.site_network import BACNET_PORT, BacnetNetwork, split_host_port


@dataclass(frozen=True, slots=True)
class BacnetBind:
    """The local BACnet/IP endpoint: ``interface`` is ``a.b.c.d/prefix``; ``port`` None: a
    free port (loopback only); ``bbmd`` and ``ttl_s`` for foreign-device registration."""

    interface: ipaddress.IPv4Interface
    port: int | None
    bbmd: tuple[str, int] | None = None
    ttl_s: int = 0

    @property
    def host(self) -> str:
        return str(self.interface.ip)

    @property
    def broadcast(self) -> str:
        return str(self.interface.network.broadcast_address)

    def link_address(self, port: int) -> str:
        """The bacpypes3 form ``a.b.c.d/prefix:port`` (the prefix gives the broadcast)."""
        return f"{self.interface.with_prefixlen}:{port}"


LOOPBACK = BacnetBind(ipaddress.IPv4Interface("127.0.0.1/32"), None)


def interface_addresses() -> dict[str, list[ipaddress.IPv4Interface]]:
    """IPv4 addresses with prefix of every interface of this host (network namespace)."""
    out: dict[str, list[ipaddress.IPv4Interface]] = {}
    for name, addrs in psutil.net_if_addrs().items():
        for a in addrs:
            if a.family == socket.AF_INET and a.netmask:
                out.setdefault(name, []).append(
                    ipaddress.IPv4Interface(f"{a.address}/{a.netmask}"))
    return out


def resolve_bind(net: BacnetNetwork | None, site_file: Path, where: str) -> BacnetBind:
    """The bind of a gateway's ``bacnet:`` entry (``where``: its path in the site file)."""
    if net is None:
        return LOOPBACK
    local = interface_addresses()
    if net.interface is not None:
        found = local.get(net.interface)
        if not found:
            names = psutil.net_if_addrs()
            have = ", ".join(sorted(names)) or "none"
            what = "has no IPv4 address" if net.interface in names else "does not exist"
            raise ConfigError(site_file, [f"{where}.interface: interface {net.interface} "
                                          f"{what} on this host (interfaces: {have})"])
        iface = found[0]
    elif net.address is not None:
        iface = ipaddress.IPv4Interface(net.address)
        held = {i.ip for addrs in local.values() for i in addrs}
        if iface.ip not in held:
            raise ConfigError(site_file, [f"{where}.address: no interface of this host has "
                                          f"address {iface.ip}"])
    else:
        iface = LOOPBACK.interface
    bbmd = None
    ttl_s = 0
    if net.foreign_device is not None:
        bbmd = split_host_port(net.foreign_device.bbmd, BACNET_PORT)
        ttl_s = net.foreign_device.ttl_s
    return BacnetBind(iface, net.port, bbmd, ttl_s)
