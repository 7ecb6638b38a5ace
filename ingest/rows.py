"""Turns one MQTT message (topic, payload) into the rows ingest stores, or into a dead letter
saying why it was refused; pure, no I/O, the clock is an argument.

Telemetry becomes one row per point at the message's ``ts``: numbers in ``value``, booleans
as 0/1 in ``value``, strings in ``value_text``; quality 0 good, 1 bad, 2 stale. A point the
gateway could not read (absent from ``points``, ``bad`` in ``quality``) is stored as a row
with a NULL value and quality 1, so history shows the gap and latest_values shows the point as
bad; a ``good``/``stale`` quality entry without a value has nothing to store and is skipped.
A point's ``flags`` (what its device said of it: BACnet's ``fault,open-loop``) ride on its
row to latest_values (history keeps no flags); flags naming a point the message has no row
for are ignored. Malformed flags (not an object, a value that is not a short string without
NUL) are dropped, the message's rows are stored and a dead letter (kind ``flags``) says why.
Points missing from the registry are refused (dead letter naming them) while the message's
known points are still stored, so one profile mismatch does not lose a device's data; any
other problem (topic, JSON, schema, NaN, size, unknown device, a timestamp more than a day
ahead or older than the catalog's ``max_age`` (the storage retention), a value PostgreSQL
cannot hold) refuses the whole message. An empty payload on a
retained topic (a cleared retained message) is ignored."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from facility import messages, topics
from facility.db.registry import Registry
from facility.messages import MessageError
from facility.site import Site
from facility.topics import Topic, TopicError, TopicKind

MAX_FUTURE = timedelta(days=1)
DEFAULT_MAX_AGE = timedelta(days=365)
MAX_REASON_CHARS = 500
QUALITY_CODE: dict[str, int] = {"good": 0, "bad": 1, "stale": 2}
GOOD, BAD = 0, 1
_FLOAT_MAX = 1.7976931348623157e308
_M = TypeVar("_M", messages.Telemetry, messages.DeviceStatus, messages.GatewayStatus,
             messages.Birth)


class DeadLetterKind(StrEnum):
    TOPIC = "topic"
    OVERSIZE = "oversize"
    PAYLOAD = "payload"
    FUTURE_TIMESTAMP = "future_timestamp"
    PAST_TIMESTAMP = "past_timestamp"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_GATEWAY = "unknown_gateway"
    UNKNOWN_POINT = "unknown_point"
    FLAGS = "flags"
    VALUE = "value"
    DATABASE = "database"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    payload: bytes
    kind: DeadLetterKind
    reason: str


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    time: datetime
    point_id: int
    value: float | None
    value_text: str | None
    quality: int
    flags: str | None = None  # latest_values only (the telemetry table keeps no flags)


@dataclass(frozen=True, slots=True)
class DeviceStatusRow:
    device_id: int
    state: str
    reason: str
    time: datetime
    device: str = ""


@dataclass(frozen=True, slots=True)
class GatewayStatusRow:
    site_id: str
    gateway: str
    state: str
    session: str
    time: datetime


@dataclass(frozen=True, slots=True)
class BirthNote:
    device: str
    profile: str
    profile_version: int
    session: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one message asks ingest to store (all empty: nothing, e.g. a cleared retain)."""

    telemetry: tuple[TelemetryRow, ...] = ()
    device_status: DeviceStatusRow | None = None
    gateway_status: GatewayStatusRow | None = None
    birth: BirthNote | None = None
    dead_letter: DeadLetter | None = None
    sequence: tuple[str, str, int] | None = None  # telemetry: (gateway, session, seq)

    @property
    def rows(self) -> int:
        return (len(self.telemetry) + (self.device_status is not None)
                + (self.gateway_status is not None) + (self.dead_letter is not None))


@dataclass(frozen=True, slots=True)
class Catalog:
    """The ids ingest resolves names to: devices of this site with their gateway and points."""

    site_id: str
    gateways: frozenset[str]
    device_ids: Mapping[str, int]
    device_gateway: Mapping[str, str]
    point_ids: Mapping[tuple[str, str], int] = field(default_factory=dict)
    max_age: timedelta = DEFAULT_MAX_AGE

    @classmethod
    def build(cls, site: Site, registry: Registry, *,
              max_age: timedelta = DEFAULT_MAX_AGE) -> Catalog:
        known = {name: i for name, i in registry.devices.items() if name in site.devices}
        return cls(
            site_id=site.id,
            gateways=frozenset(g.id for g in site.config.gateways),
            device_ids=known,
            device_gateway={name: site.devices[name].gateway for name in known},
            point_ids={k: v for k, v in registry.points.items() if k[0] in known},
            max_age=max_age,
        )


class _Refused(Exception):
    def __init__(self, kind: DeadLetterKind, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(reason)


def decode(topic: str, payload: bytes, catalog: Catalog, now: datetime) -> Decoded:
    """The rows for one message; never raises for bad input (it becomes ``dead_letter``)."""
    try:
        t = _parse_topic(topic, catalog)
        if not payload and t.kind is not TopicKind.TELEMETRY:
            return Decoded()
        if len(payload) > messages.MAX_PAYLOAD_BYTES:
            raise _Refused(DeadLetterKind.OVERSIZE, f"payload of {len(payload)} bytes exceeds "
                           f"{messages.MAX_PAYLOAD_BYTES}")
        return _DECODERS[t.kind](t, payload, catalog, now)
    except _Refused as exc:
        return Decoded(dead_letter=_dead(topic, payload, exc.kind, exc.reason))


def dead_letter(topic: str, payload: bytes, kind: DeadLetterKind, reason: str) -> Decoded:
    return Decoded(dead_letter=_dead(topic, payload, kind, reason))


def _dead(topic: str, payload: bytes, kind: DeadLetterKind, reason: str) -> DeadLetter:
    clean = reason.replace("\x00", "\\x00")
    if len(clean) > MAX_REASON_CHARS:
        clean = clean[: MAX_REASON_CHARS - 3] + "..."
    return DeadLetter(topic=topic.replace("\x00", "\\x00"), payload=payload, kind=kind,
                      reason=clean)


def _parse_topic(topic: str, catalog: Catalog) -> Topic:
    try:
        t = topics.parse(topic)
    except TopicError as exc:
        raise _Refused(DeadLetterKind.TOPIC, f"topic: {exc.reason}") from None
    if t.site != catalog.site_id:
        raise _Refused(DeadLetterKind.TOPIC,
                       f"topic: site {t.site!r} is not this ingest's site {catalog.site_id!r}")
    if t.kind is TopicKind.ALARMS:
        raise _Refused(DeadLetterKind.TOPIC, "topic: alarm events are not ingested")
    if t.gateway not in catalog.gateways:
        raise _Refused(DeadLetterKind.UNKNOWN_GATEWAY,
                       f"unknown gateway {t.gateway!r}: not in the site configuration")
    return t


def _parse(model: type[_M], payload: bytes, now: datetime,
           max_age: timedelta = DEFAULT_MAX_AGE) -> _M:
    try:
        msg = messages.parse(model, payload)
    except MessageError as exc:
        raise _Refused(DeadLetterKind.PAYLOAD,
                       f"{model.__name__.lower()}: {exc.reason}") from None
    if msg.ts - now > MAX_FUTURE:
        raise _Refused(DeadLetterKind.FUTURE_TIMESTAMP,
                       f"ts {msg.ts.isoformat()} is more than {MAX_FUTURE.days} day ahead of "
                       f"the ingest clock ({now.isoformat(timespec='seconds')})")
    if now - msg.ts > max_age:
        raise _Refused(DeadLetterKind.PAST_TIMESTAMP,
                       f"ts {msg.ts.isoformat()} is older than the {max_age.days} day "
                       f"retention (ingest clock {now.isoformat(timespec='seconds')})")
    return msg


def _device_id(t: Topic, catalog: Catalog) -> int:
    assert t.device is not None
    device_id = catalog.device_ids.get(t.device)
    if device_id is None:
        raise _Refused(DeadLetterKind.UNKNOWN_DEVICE,
                       f"unknown device {t.device!r}: not in the site registry")
    owner = catalog.device_gateway[t.device]
    if owner != t.gateway:
        raise _Refused(DeadLetterKind.UNKNOWN_DEVICE,
                       f"device {t.device!r} belongs to gateway {owner!r}, not {t.gateway!r}")
    return device_id


def _no_nul(what: str, text: str) -> None:
    if "\x00" in text:
        raise _Refused(DeadLetterKind.VALUE, f"{what} contains a NUL character")


def _telemetry(t: Topic, payload: bytes, catalog: Catalog, now: datetime) -> Decoded:
    msg = _parse(messages.Telemetry, payload, now, catalog.max_age)
    _device_id(t, catalog)
    assert t.device is not None
    flags = msg.flags or {}
    rows: list[TelemetryRow] = []
    unknown: list[str] = []
    for name, value in msg.points.items():
        point_id = catalog.point_ids.get((t.device, name))
        if point_id is None:
            unknown.append(name)
            continue
        quality = QUALITY_CODE[msg.quality.get(name, "good")]
        number, text = _value(name, value)
        rows.append(TelemetryRow(msg.ts, point_id, number, text, quality, flags.get(name)))
    for name, q in msg.quality.items():
        if name in msg.points or q != "bad":
            continue
        point_id = catalog.point_ids.get((t.device, name))
        if point_id is None:
            unknown.append(name)
            continue
        rows.append(TelemetryRow(msg.ts, point_id, None, None, BAD, flags.get(name)))
    assert t.gateway is not None
    return Decoded(telemetry=tuple(rows), dead_letter=_partly_refused(t, payload, msg, unknown,
                                                                      len(rows)),
                   sequence=(t.gateway, msg.session, msg.seq))


def _partly_refused(t: Topic, payload: bytes, msg: messages.Telemetry, unknown: list[str],
                    stored: int) -> DeadLetter | None:
    """The dead letter of a message stored in part: its unknown points, its malformed flags."""
    reasons: list[str] = []
    if unknown:
        reasons.append(f"unknown point(s) of device {t.device!r}: {', '.join(sorted(unknown))}")
    if msg.flags_error is not None:
        reasons.append(f"flags dropped: {msg.flags_error}")
    if not reasons:
        return None
    kind = DeadLetterKind.UNKNOWN_POINT if unknown else DeadLetterKind.FLAGS
    return _dead(str(t), payload, kind, f"{'; '.join(reasons)} ({stored} known point(s) stored)")


def _value(name: str, value: messages.Value) -> tuple[float | None, str | None]:
    if isinstance(value, bool):
        return (1.0 if value else 0.0), None
    if isinstance(value, str):
        _no_nul(f"point {name}", value)
        return None, value
    if isinstance(value, int) and abs(value) > _FLOAT_MAX:
        raise _Refused(DeadLetterKind.VALUE, f"point {name} is an integer too large to store")
    number = float(value)
    if not math.isfinite(number):  # messages.Telemetry refuses these already; kept as a guard
        raise _Refused(DeadLetterKind.VALUE, f"point {name} is {number}")
    return number, None


def _device_status(t: Topic, payload: bytes, catalog: Catalog, now: datetime) -> Decoded:
    msg = _parse(messages.DeviceStatus, payload, now)
    device_id = _device_id(t, catalog)
    _no_nul("reason", msg.reason)
    assert t.device is not None
    return Decoded(device_status=DeviceStatusRow(device_id, msg.state, msg.reason, msg.ts,
                                                 t.device))


def _gateway_status(t: Topic, payload: bytes, catalog: Catalog, now: datetime) -> Decoded:
    msg = _parse(messages.GatewayStatus, payload, now)
    _no_nul("session", msg.session)
    assert t.gateway is not None
    return Decoded(gateway_status=GatewayStatusRow(t.site, t.gateway, msg.state, msg.session,
                                                   msg.ts))


def _birth(t: Topic, payload: bytes, catalog: Catalog, now: datetime) -> Decoded:
    msg = _parse(messages.Birth, payload, now)
    _device_id(t, catalog)
    assert t.device is not None
    return Decoded(birth=BirthNote(t.device, msg.profile, msg.profile_version, msg.session))


_DECODERS = {
    TopicKind.TELEMETRY: _telemetry,
    TopicKind.DEVICE_STATUS: _device_status,
    TopicKind.GATEWAY_STATUS: _gateway_status,
    TopicKind.BIRTH: _birth,
}
