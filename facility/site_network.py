"""A gateway's field networks in the site file: its BACnet/IP port (bound address, UDP port,
foreign-device registration with a BBMD) and its Modbus RTU lines (a serial port, or a
serial device server carrying RTU frames over TCP). Pure models, no I/O: an interface name
is only resolved when the gateway starts (gateway.bacnet_net)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID = r"^[a-z0-9_-]+$"
BACNET_PORT = 47808
HOST_PORT = re.compile(r"^(?P<host>[^:\s]+)(?::(?P<port>\d{1,5}))?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """'host[:port]' -> (host, port); ValueError when it is not that."""
    m = HOST_PORT.match(text.strip())
    if not m or not 0 < int(m.group("port") or default_port) < 65536:
        raise ValueError(f"{text!r} is not host[:port]")
    return m.group("host"), int(m.group("port") or default_port)


class ForeignDevice(_Strict):
    """Registration with a BBMD as a foreign device, to reach devices on another subnet."""

    bbmd: str = Field(description="the BBMD's host[:port] (port 47808 by default)")
    ttl_s: int = Field(default=300, ge=30, le=65535,
                       description="time to live of the registration; renewed before it ends")

    @field_validator("bbmd")
    @classmethod
    def _host_port(cls, v: str) -> str:
        split_host_port(v, BACNET_PORT)
        return v


class BacnetNetwork(_Strict):
    """Where the gateway's BACnet/IP application lives: ``interface`` (e.g. ``eth0``, whose
    IPv4 address and prefix are taken at start) or ``address`` with its prefix
    (``192.168.10.5/24``: the broadcast address follows from it); the UDP port; optionally
    foreign-device registration with a BBMD. Neither interface nor address: loopback."""

    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")
    address: str | None = None
    port: int = Field(default=BACNET_PORT, ge=1, le=65535)
    foreign_device: ForeignDevice | None = None

    @field_validator("address")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "/" not in v:
            raise ValueError(f"{v!r} needs its prefix length, e.g. 192.168.10.5/24")
        try:
            iface = ipaddress.IPv4Interface(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not an IPv4 address with prefix: {exc}") from exc
        return str(iface)

    @model_validator(mode="after")
    def _one_source(self) -> BacnetNetwork:
        if self.interface and self.address:
            raise ValueError("give interface or address, not both")
        return self


Parity = Literal["N", "E", "O"]


class RtuLineConfig(_Strict):
    """One RS-485 line of Modbus RTU units: a serial port of the gateway's computer
    (``serial``) or a serial device server's ``host:port`` carrying RTU frames over TCP
    (``server``). ``baudrate``, ``parity``, ``stopbits`` are the line's (for a device
    server, its serial side: they set the timing of the inter-frame gap)."""

    id: str = Field(pattern=ID)
    serial: str | None = Field(default=None, description="serial device, e.g. /dev/ttyUSB0")
    server: str | None = Field(default=None, description="serial device server host:port")
    baudrate: int = Field(default=9600, ge=300, le=1_000_000)
    parity: Parity = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = Field(default=0.5, gt=0, le=30,
                             description="per request: a unit silent this long timed out")
    connect_timeout_s: float = Field(default=3.0, gt=0, le=60)

    @field_validator("server")
    @classmethod
    def _server(cls, v: str | None) -> str | None:
        if v is not None:
            if ":" not in v:
                raise ValueError(f"{v!r} needs a port (host:port)")
            split_host_port(v, 0)
        return v

    @model_validator(mode="after")
    def _one_path(self) -> RtuLineConfig:
        if (self.serial is None) == (self.server is None):
            raise ValueError("give exactly one of serial (a port) or server (host:port)")
        return self

    @property
    def bits_per_char(self) -> int:
        """Start bit, data bits, parity bit if any, stop bits."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baudrate

    @property
    def gap_s(self) -> float:
        """The t3.5 silent interval between frames (fixed 1.75 ms above 19200 baud)."""
        return 0.00175 if self.baudrate > 19200 else 3.5 * self.char_s

    @property
    def endpoint(self) -> str:
        return self.serial or self.server or ""
