"""The on-disk store-and-forward queue of one gateway: a SQLite file (stdlib ``sqlite3``,
WAL journal) holding the messages that could not be handed to the broker yet; synchronous,
meant to be called from one dedicated thread (``gateway.forwarder`` does so).

Rows keep their order (``id``), topic, payload, retain flag, whether the payload is
telemetry (flagged ``historical`` when replayed) and whether it is *critical* (device
status, birth, telemetry that carries an alarm or state change). ``append`` adds a batch in
one transaction; past ``max_messages`` rows or ``max_bytes`` bytes (topic and payload) it
deletes the oldest *bulk* rows, never a critical one (critical rows may take the queue past
its bounds), and returns how many it dropped. ``next_batch`` reads the critical rows first,
then the bulk ones, each in order; ``delete`` removes rows once the broker has acknowledged
them. A write the disk refuses (full, read-only, I/O error) raises ``sqlite3.Error`` with
the store unchanged (the transaction is rolled back). Opening an existing file resumes its
queue."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    telemetry INTEGER NOT NULL,
    critical INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_bulk ON queue (critical, id);
"""
_SIZE = "length(CAST(topic AS BLOB)) + length(payload)"
DEFAULT_MAX_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message on its way to the broker."""

    topic: str
    payload: bytes
    retain: bool = False
    telemetry: bool = False
    critical: bool = False

    @property
    def size(self) -> int:
        return len(self.topic.encode()) + len(self.payload)


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    message: Outgoing


class MessageStore:
    def __init__(self, path: Path | str, max_messages: int,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        count, critical, size = self._db.execute(
            f"SELECT count(*), coalesce(sum(critical), 0), coalesce(sum({_SIZE}), 0)"
            " FROM queue").fetchone()
        self.count, self.critical, self.bytes = int(count), int(critical), int(size)

    def append(self, messages: Sequence[Outgoing]) -> int:
        """Store a batch in order; returns the bulk messages dropped to stay in bounds."""
        if not messages:
            return 0
        count = self.count + len(messages)
        critical = self.critical + sum(1 for m in messages if m.critical)
        size = self.bytes + sum(m.size for m in messages)
        dropped = 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO queue (topic, payload, retain, telemetry, critical) "
                "VALUES (?, ?, ?, ?, ?)",
                [(m.topic, m.payload, m.retain, m.telemetry, m.critical) for m in messages])
            rows_over = min(count - self.max_messages, count - critical)
            bytes_over = size - self.max_bytes
            if rows_over > 0 or bytes_over > 0:
                dropped, freed, last_id = self._oldest_bulk(max(rows_over, 0), bytes_over)
                if dropped:
                    self._db.execute("DELETE FROM queue WHERE NOT critical AND id <= ?",
                                     (last_id,))
                    count -= dropped
                    size -= freed
        self.count, self.critical, self.bytes = count, critical, size
        return dropped

    def _oldest_bulk(self, rows: int, size: int) -> tuple[int, int, int]:
        """How many of the oldest bulk rows free ``rows`` rows and ``size`` bytes: (rows,
        bytes, last id)."""
        n = freed = last = 0
        for row_id, row_size in self._db.execute(
                f"SELECT id, {_SIZE} FROM queue WHERE NOT critical ORDER BY id"):
            if n >= rows and freed >= size:
                break
            n, freed, last = n + 1, freed + int(row_size), int(row_id)
        return n, freed, last

    def next_batch(self, limit: int) -> list[Stored]:
        """Up to ``limit`` rows to replay: the critical ones first, then bulk, each in order."""
        rows = self._db.execute(
            "SELECT id, topic, payload, retain, telemetry, critical FROM queue "
            "WHERE critical ORDER BY id LIMIT ?", (limit,)).fetchall()
        if len(rows) < limit:
            rows += self._db.execute(
                "SELECT id, topic, payload, retain, telemetry, critical FROM queue "
                "WHERE NOT critical ORDER BY id LIMIT ?", (limit - len(rows),)).fetchall()
        return [Stored(r[0], Outgoing(r[1], bytes(r[2]), bool(r[3]), bool(r[4]), bool(r[5])))
                for r in rows]

    def oldest(self, limit: int) -> list[Stored]:
        """The head of the queue in order (critical or not)."""
        rows = self._db.execute(
            "SELECT id, topic, payload, retain, telemetry, critical FROM queue "
            "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Stored(r[0], Outgoing(r[1], bytes(r[2]), bool(r[3]), bool(r[4]), bool(r[5])))
                for r in rows]

    def delete(self, rows: Sequence[Stored]) -> None:
        if not rows:
            return
        count, critical, size = self.count, self.critical, self.bytes
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for i in range(0, len(rows), 500):
                chunk = rows[i : i + 500]
                marks = ",".join("?" * len(chunk))
                found = self._db.execute(
                    f"SELECT critical, {_SIZE} FROM queue WHERE id IN ({marks})",
                    [r.id for r in chunk]).fetchall()  # a bulk row may have been dropped
                self._db.execute(f"DELETE FROM queue WHERE id IN ({marks})",
                                 [r.id for r in chunk])
                count -= len(found)
                critical -= sum(1 for c, _s in found if c)
                size -= sum(int(s) for _c, s in found)
        self.count, self.critical, self.bytes = count, critical, size

    def close(self) -> None:
        self._db.close()
