"""The hot path of ingest: a telemetry payload straight to PostgreSQL binary COPY rows, with
no pydantic model and no per-point objects. Pure, no I/O.

``FastDecoder.telemetry`` accepts only what ``ingest.rows.decode`` (the pydantic model)
accepts, and yields the same rows: the JSON must parse with orjson, every field must have
its exact JSON type (``seq`` a non-negative integer, ``session`` 1-64 characters,
``historical`` a boolean, values numbers, booleans or strings of at most 256 characters
without NUL, qualities good/bad/stale, ``flags`` absent, null or an object of such strings),
``ts`` must be RFC 3339 with an offset, within the accepted window, and every point must be
known. Anything else returns None and the caller falls back to ``rows.decode``, which either
stores it the same way or says precisely why it refuses it (the dead letter). So the fast
path can be strict without ever deciding differently from the contract; tests/unit/ingest
check the equivalence on generated payloads. A point's flags ride along (``Telemetry.flags``)
for latest_values, whose staging rows are these rows with a sixth field (``latest_row``)."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from facility import topics
from facility.messages import MAX_PAYLOAD_BYTES, MAX_STRING_VALUE
from facility.topics import TopicKind
from ingest.rows import MAX_FUTURE, QUALITY_CODE, Catalog, TelemetryRow

EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")
# Binary COPY row of (time timestamptz, point_id int4, value float8, value_text text,
# quality int2): field count, then each field's length and bytes (-1 for NULL).
NUMBER_ROW = struct.Struct(">hiqiiidiih")
NULL_ROW = struct.Struct(">hiqiiiiih")
TEXT_HEAD = struct.Struct(">hiqiiii")
TEXT_TAIL = struct.Struct(">ih")
# latest_values' staging row: the same fields and a sixth, flags text (NULL: none)
LATEST_FIELDS = struct.pack(">h", 6)
NULL_FIELD = struct.pack(">i", -1)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2
COPY_TRAILER = b"\xff\xff"
_BAD = QUALITY_CODE["bad"]
_TS_CACHE_MAX = 4096


def micros(t: datetime) -> int:
    """PostgreSQL's timestamptz: microseconds since 2000-01-01 UTC."""
    return (t - EPOCH_2000) // _US


def from_micros(us: int) -> datetime:
    return EPOCH_2000 + timedelta(microseconds=us)


def encode_row(row: TelemetryRow) -> bytes:
    """One row of the slow path in the same binary COPY format."""
    t = micros(row.time)
    if row.value_text is not None:
        text = row.value_text.encode()
        return (TEXT_HEAD.pack(5, 8, t, 4, row.point_id, -1, len(text)) + text
                + TEXT_TAIL.pack(2, row.quality))
    if row.value is None:
        return NULL_ROW.pack(5, 8, t, 4, row.point_id, -1, -1, 2, row.quality)
    return NUMBER_ROW.pack(5, 8, t, 4, row.point_id, 8, row.value, -1, 2, row.quality)


def flags_field(flags: str | None) -> bytes:
    """The flags column of a latest_values staging row."""
    if flags is None:
        return NULL_FIELD
    text = flags.encode()
    return struct.pack(">i", len(text)) + text


def latest_row(row: bytes, flags: bytes) -> bytes:
    """A telemetry row (five fields) as a latest_values staging row (six: flags added)."""
    return LATEST_FIELDS + row[2:] + flags


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """What the fast path needs of one device, found by its telemetry topic."""

    device: str
    gateway: str
    device_id: int
    points: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A telemetry message the fast path accepted: its rows already encoded."""

    entry: DeviceEntry
    time_us: int
    seq: int
    session: str
    rows: list[tuple[int, bytes]]  # (point id, encoded row)
    flags: dict[int, str] | None = None  # point id -> flags, for the points with a row


def device_entries(catalog: Catalog) -> dict[bytes, DeviceEntry]:
    """Telemetry topic (bytes, as received) -> device entry, for every known device."""
    points: dict[str, dict[str, int]] = {}
    for (device, name), pid in catalog.point_ids.items():
        points.setdefault(device, {})[name] = pid
    out: dict[bytes, DeviceEntry] = {}
    for device, device_id in catalog.device_ids.items():
        gateway = catalog.device_gateway[device]
        t = topics.device_topic(TopicKind.TELEMETRY, catalog.site_id, gateway, device)
        out[t.encode()] = DeviceEntry(device, gateway, device_id, points.get(device, {}))
    return out


class FastDecoder:
    """Decodes telemetry payloads of the catalog's devices; ``window`` sets the clock."""

    def __init__(self, catalog: Catalog) -> None:
        self.entries = device_entries(catalog)
        self._max_age_us = catalog.max_age // _US
        self._future_us = MAX_FUTURE // _US
        self._ts: dict[str, int | None] = {}
        self.lo_us = 0
        self.hi_us = 0

    def window(self, now: datetime) -> None:
        """Accept timestamps within [now - max_age, now + MAX_FUTURE] (same as decode)."""
        now_us = micros(now)
        self.lo_us = now_us - self._max_age_us
        self.hi_us = now_us + self._future_us

    def time_us(self, ts: str) -> int | None:
        cache = self._ts
        t = cache.get(ts, -1)
        if t != -1:
            return t
        t = None
        if _RFC3339.match(ts):
            try:
                t = micros(datetime.fromisoformat(ts))
            except (ValueError, OverflowError):
                t = None
        if len(cache) >= _TS_CACHE_MAX:
            cache.clear()
        cache[ts] = t
        return t

    def telemetry(self, entry: DeviceEntry, payload: bytes) -> Telemetry | None:
        """The encoded rows, or None: let ``rows.decode`` decide."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            return None
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if type(msg) is not dict:
            return None
        ts, seq, session = msg.get("ts"), msg.get("seq"), msg.get("session")
        points = msg.get("points")
        quality = msg.get("quality", _EMPTY)
        if (type(ts) is not str or type(seq) is not int or seq < 0
                or type(session) is not str or not 0 < len(session) <= 64
                or type(points) is not dict or type(quality) is not dict
                or type(msg.get("historical", False)) is not bool):
            return None
        t = self.time_us(ts)
        if t is None or t > self.hi_us or t < self.lo_us:
            return None
        for q in quality.values():
            if type(q) is not str or q not in QUALITY_CODE:
                return None
        flags = msg.get("flags")
        if flags is not None and not _good_flags(flags):
            return None
        pids = entry.points
        rows: list[tuple[int, bytes]] = []
        for name, value in points.items():
            pid = pids.get(name)
            if pid is None:
                return None
            q = QUALITY_CODE[quality[name]] if name in quality else 0
            tv = type(value)
            if tv is float:
                if not math.isfinite(value):
                    return None
                row = NUMBER_ROW.pack(5, 8, t, 4, pid, 8, value, -1, 2, q)
            elif tv is int:
                row = NUMBER_ROW.pack(5, 8, t, 4, pid, 8, float(value), -1, 2, q)
            elif tv is bool:
                row = NUMBER_ROW.pack(5, 8, t, 4, pid, 8, 1.0 if value else 0.0, -1, 2, q)
            elif tv is str:
                if len(value) > MAX_STRING_VALUE or "\x00" in value:
                    return None
                text = value.encode()
                row = (TEXT_HEAD.pack(5, 8, t, 4, pid, -1, len(text)) + text
                       + TEXT_TAIL.pack(2, q))
            else:
                return None
            rows.append((pid, row))
        for name, q in quality.items():
            if q != "bad" or name in points:
                continue
            pid = pids.get(name)
            if pid is None:
                return None
            row = NULL_ROW.pack(5, 8, t, 4, pid, -1, -1, 2, _BAD)
            rows.append((pid, row))
        return Telemetry(entry, t, seq, session, rows,
                         _flags_by_id(flags, pids, points, quality) if flags else None)


def _good_flags(flags: object) -> bool:
    """An object of strings of at most MAX_STRING_VALUE characters without NUL."""
    if type(flags) is not dict:
        return False
    for words in flags.values():
        if type(words) is not str or len(words) > MAX_STRING_VALUE or "\x00" in words:
            return False
    return True


def _flags_by_id(flags: dict[str, str], pids: Mapping[str, int], points: dict[str, object],
                 quality: dict[str, str]) -> dict[int, str]:
    """Flags by point id, for the points that have a row (a value, or bad without one)."""
    return {pids[n]: w for n, w in flags.items()
            if n in pids and (n in points or quality.get(n) == "bad")}


_EMPTY: dict[str, str] = {}
