"""Where and how a client reaches the MQTT broker: the URL(s), the login and TLS.

``MqttEndpoint`` is what both MQTT clients (``facility.mqtt`` for publishing, the asyncio
``facility.mqtt_session`` for receiving) take: ``mqtt://`` is plain TCP (port 1883 by
default), ``mqtts://`` is TLS (port 8883) with the broker's certificate checked against a CA
file (or the system's CAs) and its host name verified, and optionally a client certificate.
A clustered broker is given as a comma-separated list of its nodes' URLs
(``mqtts://10.0.0.1:8883,mqtts://10.0.0.2:8883``), all of one scheme: the clients try them
in turn, moving to the next one whenever a connection attempt fails or a connection is lost
(``MqttUrl.parse_list``, ``MqttEndpoint.urls``). ``keepalive_s`` and ``connect_timeout_s``
say how soon a dead node is noticed: a silent connection is given up after 1.5 to 2
keepalives, a connection attempt after ``connect_timeout_s``.
The password is a ``SecretStr``: it never appears in a repr or a log line. The module also
turns a failed connection into one line a duty engineer can act on (``failure_reason``,
``connack_reason``). No I/O, except reading the CA and certificate files into an SSL context."""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

_URL = re.compile(r"^(?P<scheme>mqtts?)://(?P<host>[^:/\[\]]+|\[[0-9a-fA-F:]+\])"
                  r"(?::(?P<port>\d+))?/?$")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
# A dead node (no RST: its machine is gone or cut off) is noticed after 1.5-2 keepalives.
DEFAULT_KEEPALIVE_S = 10
DEFAULT_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class MqttUrl:
    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        m = _URL.match(url.strip())
        if not m:
            raise ValueError(f"{url!r} is not an MQTT URL like mqtt://127.0.0.1:1883 or "
                             "mqtts://broker.example.com:8883")
        tls = m.group("scheme") == "mqtts"
        port = int(m.group("port") or (8883 if tls else 1883))
        if not 0 < port < 65536:
            raise ValueError(f"{url!r}: port {port} is out of range")
        return cls(m.group("host").strip("[]"), port, tls)

    @classmethod
    def parse_list(cls, text: str) -> tuple[MqttUrl, ...]:
        """``mqtt://a:1883,mqtt://b:1883``: one or more URLs of one scheme, no repeats."""
        urls = tuple(cls.parse(part) for part in text.split(",") if part.strip())
        if not urls:
            raise ValueError("no MQTT URL given (e.g. mqtt://127.0.0.1:1883)")
        if len({u.tls for u in urls}) > 1:
            raise ValueError(f"{text!r} mixes mqtt:// and mqtts://: a broker's nodes are "
                             "reached one way (all TLS or all plain)")
        repeated = sorted({str(u) for u in urls if urls.count(u) > 1})
        if repeated:
            raise ValueError(f"{text!r} names {', '.join(repeated)} more than once")
        return urls

    @property
    def is_loopback(self) -> bool:
        if self.host.lower() in _LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Will:
    """The message a broker publishes for a client whose connection dies uncleanly (sent in
    every CONNECT; a clustered broker loses it with the node the client was on)."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A broker and how to log in to it. Build it with ``CommonSettings.mqtt_endpoint()``
    in a service, or ``MqttEndpoint.of("mqtt://127.0.0.1:1883")`` for an anonymous one.
    ``url`` is the first node, ``others`` the rest of a cluster's (``urls``: all of them);
    the login and TLS files are the same on every node."""

    url: MqttUrl
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    others: tuple[MqttUrl, ...] = ()
    keepalive_s: int = DEFAULT_KEEPALIVE_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    @classmethod
    def of(cls, target: str | MqttEndpoint) -> MqttEndpoint:
        """An anonymous endpoint from one URL or a comma-separated list (or ``target``)."""
        if isinstance(target, MqttEndpoint):
            return target
        first, *rest = MqttUrl.parse_list(target)
        return cls(first, others=tuple(rest))

    @property
    def urls(self) -> tuple[MqttUrl, ...]:
        return (self.url, *self.others)

    def __post_init__(self) -> None:
        if any(u.tls != self.url.tls for u in self.others) or self.url in self.others:
            raise ValueError(f"{self}: a broker's nodes are all TLS or all plain, each once")
        if not 1 <= self.keepalive_s <= 3600:
            raise ValueError(f"MQTT keepalive {self.keepalive_s} s is out of 1..3600")
        if not 0 < self.connect_timeout_s <= 120:
            raise ValueError(f"MQTT connect timeout {self.connect_timeout_s} s is out of "
                             "0..120")
        if self.password is not None and not self.username:
            raise ValueError("an MQTT password needs a user name")
        if not self.url.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError(f"TLS files are set but {self.url} is plain: use mqtts://")
        if self.key_file and not self.cert_file:
            raise ValueError("an MQTT client key needs its certificate (FACILITY_MQTT_CERT_FILE)")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client's TLS context (None for mqtt://): TLS 1.2 or later, the broker's
        certificate required and checked against ``ca_file`` (else the system's CAs), host
        name verified. Raises OSError / ssl.SSLError for an unreadable or bad file."""
        if not self.url.tls:
            return None
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            ctx.load_cert_chain(str(self.cert_file),
                                str(self.key_file) if self.key_file else None)
        return ctx

    def password_text(self) -> str | None:
        return None if self.password is None else self.password.get_secret_value()

    def describe(self) -> str:
        """``mqtts://host:8883 as gw-a`` (never the password)."""
        return f"{self} as {self.username}" if self.username else f"{self} (anonymous)"

    def __str__(self) -> str:
        return ",".join(str(u) for u in self.urls)


_CONNACK_V5 = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8C: "bad authentication method", 0x95: "packet too large", 0x97: "quota exceeded",
    0x9F: "connection rate exceeded",
}
_CONNACK_V311 = {
    1: "unacceptable protocol version", 2: "client identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorized",
}


def connack_reason(code: int, *, v5: bool) -> str:
    """The words for a CONNACK refusal code."""
    words = (_CONNACK_V5 if v5 else _CONNACK_V311).get(code, "refused")
    return f"{words} (CONNACK code {code})"


def refused_login(endpoint: MqttEndpoint, reason: str) -> str:
    who = f"user {endpoint.username}" if endpoint.username else "an anonymous client"
    hint = ""
    if "user name or password" in reason or "not authorized" in reason:
        hint = (": check FACILITY_MQTT_USERNAME and the password (file)" if endpoint.username
                else ": the broker requires a login (FACILITY_MQTT_USERNAME, "
                     "FACILITY_MQTT_PASSWORD_FILE)")
    return f"refused the login of {who}: {reason}{hint}"


def failure_reason(exc: BaseException, endpoint: MqttEndpoint,
                   url: MqttUrl | None = None) -> str:
    """One phrase for why a connection attempt failed, e.g. ``TLS: the broker's certificate
    is not trusted: certificate has expired``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (exc.verify_message or exc.reason or str(exc)).rstrip(".")
        return (f"TLS: the broker's certificate is not accepted: {detail} "
                f"(CA file {endpoint.ca_file or 'system default'})")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"host name {(url or endpoint.url).host} not found ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port?)"
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or (
            isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)):
        return closed_before_connack(endpoint)
    if isinstance(exc, TimeoutError):
        return "no answer (timeout)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def closed_before_connack(endpoint: MqttEndpoint) -> str:
    hint = ("a TLS port spoken to in plain text? use mqtts://" if not endpoint.url.tls
            else "the broker dropped the connection")
    return f"connection closed before the broker answered the CONNECT ({hint})"


def no_delay(_c: Any, _u: Any, sock: Any) -> None:
    """Send each packet at once: with Nagle's algorithm, a PUBLISH written right after a
    PUBACK waits for the broker's delayed ACK of it (about 40 ms on Linux)."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not a TCP socket after all: Nagle stays
