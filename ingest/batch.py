"""A batch of received messages on its way to one database transaction, and the assembler
that decodes deliveries into it. Pure, no I/O: the clock is passed in.

Telemetry rows are appended to one binary COPY buffer as they are decoded (the fast path
for the catalog's telemetry topics, ``rows.decode`` for everything else); the batch also
keeps, per point, its newest row (for latest_values), the minute buckets and UTC days it
touches (rollups to refresh, partitions to have), statuses, dead letters and births. The
deliveries themselves are kept to be acknowledged once the batch is committed and, if the
database refuses the batch as a whole, to be written one by one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from facility.mqtt_session import Delivery
from ingest.fast_path import (
    COPY_HEADER,
    COPY_TRAILER,
    NULL_FIELD,
    FastDecoder,
    encode_row,
    flags_field,
    latest_row,
    micros,
)
from ingest.rows import (
    BirthNote,
    Catalog,
    DeadLetter,
    DeadLetterKind,
    Decoded,
    DeviceStatusRow,
    GatewayStatusRow,
    dead_letter,
    decode,
)
from ingest.sequences import SequenceTracker

log = logging.getLogger(__name__)
MINUTE_US = 60_000_000
DAY_US = 86_400 * 1_000_000


@dataclass(slots=True)
class Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    copy: bytearray = field(default_factory=bytearray)
    rows: int = 0
    latest: dict[int, tuple[int, bytes, bytes]] = field(default_factory=dict)  # time, row, flags
    minutes: set[int] = field(default_factory=set)
    days: set[int] = field(default_factory=set)
    device_status: list[DeviceStatusRow] = field(default_factory=list)
    gateway_status: list[GatewayStatusRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    births: list[tuple[BirthNote, bool]] = field(default_factory=list)
    maybe_duplicate: bool = False  # a delivery the broker flagged as a possible redelivery
    redelivered: int = 0
    newest_us: int = 0  # newest telemetry time in the batch

    @property
    def size(self) -> int:
        """Rows this batch writes: the measure of batch_rows."""
        return (self.rows + len(self.device_status) + len(self.gateway_status)
                + len(self.dead_letters))

    def copy_data(self) -> bytes:
        """The telemetry rows as one binary COPY stream."""
        return COPY_HEADER + bytes(self.copy) + COPY_TRAILER

    def latest_data(self) -> bytes:
        """Each point's newest row with its flags, for latest_values (binary COPY)."""
        return (COPY_HEADER + b"".join(latest_row(r, f) for _, r, f in self.latest.values())
                + COPY_TRAILER)

    def add_rows(self, time_us: int, rows: list[tuple[int, bytes]],
                 flags: dict[int, str] | None = None) -> None:
        latest = self.latest
        for pid, row in rows:
            self.copy += row
            seen = latest.get(pid)
            if seen is None or seen[0] < time_us:
                f = flags.get(pid) if flags else None
                latest[pid] = (time_us, row, NULL_FIELD if f is None else flags_field(f))
        self.rows += len(rows)
        if time_us > self.newest_us:
            self.newest_us = time_us
        self.minutes.add(time_us // MINUTE_US)
        self.days.add(time_us // DAY_US)

    def add_decoded(self, decoded: Decoded, retain: bool) -> None:
        if decoded.telemetry:
            t = micros(decoded.telemetry[0].time)
            self.add_rows(t, [(r.point_id, encode_row(r)) for r in decoded.telemetry],
                          {r.point_id: r.flags for r in decoded.telemetry if r.flags is not None})
        if decoded.device_status is not None:
            self.device_status.append(decoded.device_status)
        if decoded.gateway_status is not None:
            self.gateway_status.append(decoded.gateway_status)
        if decoded.dead_letter is not None:
            self.dead_letters.append(decoded.dead_letter)
        if decoded.birth is not None:
            self.births.append((decoded.birth, retain))


class Assembler:
    """Decodes deliveries into batches: the fast path first, ``rows.decode`` otherwise."""

    def __init__(self, catalog: Catalog, sequences: SequenceTracker | None = None) -> None:
        self.catalog = catalog
        self.fast = FastDecoder(catalog)
        self.sequences = sequences
        self._now = datetime.min
        self.fast_messages = 0
        self.slow_messages = 0

    def clock(self, now: datetime) -> None:
        """Set the clock for the next deliveries (once per batch is precise enough)."""
        self._now = now
        self.fast.window(now)

    def add(self, batch: Batch, delivery: Delivery, now_s: float = 0.0) -> None:
        batch.deliveries.append(delivery)
        if delivery.dup:
            batch.maybe_duplicate = True
            batch.redelivered += 1
        entry = self.fast.entries.get(delivery.topic)
        if entry is not None:
            tel = self.fast.telemetry(entry, delivery.payload)
            if tel is not None:
                self.fast_messages += 1
                batch.add_rows(tel.time_us, tel.rows, tel.flags)
                if self.sequences is not None:
                    self.sequences.observe(entry.gateway, tel.session, tel.seq, now_s)
                return
        self.slow_messages += 1
        decoded = self.decode(delivery)
        batch.add_decoded(decoded, delivery.retain)
        if decoded.sequence is not None and self.sequences is not None:
            self.sequences.observe(*decoded.sequence, now_s)

    def decode(self, delivery: Delivery) -> Decoded:
        """``rows.decode`` of one delivery; a bug of ours becomes a dead letter."""
        topic = delivery.topic.decode("utf-8", "backslashreplace")
        try:
            return decode(topic, delivery.payload, self.catalog, self._now)
        except Exception as exc:  # a bug of ours must not stop ingest: keep the message
            log.exception("could not decode a message from %s", topic)
            return dead_letter(topic, delivery.payload, DeadLetterKind.INTERNAL,
                               f"ingest could not decode it: {exc!r}")
