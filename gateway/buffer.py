"""The on-disk store-and-forward queue of one gateway: a SQLite file (stdlib ``sqlite3``,
WAL journal) holding the messages that could not be handed to the broker yet; synchronous,
meant to be called from one dedicated thread (``gateway.forwarder`` does so).

Rows keep their order (``id``), topic, payload, retain flag, whether the payload is
telemetry (flagged ``historical`` when replayed) and whether it is *critical* (device
status, birth, telemetry that carries an alarm or state change). ``append`` adds a batch in
one transaction; past ``max_messages`` rows it deletes the oldest *bulk* rows, never a
critical one (critical rows may take the queue past its bound), and returns how many it
dropped. ``oldest`` reads the head in order; ``delete`` removes rows once the broker has
acknowledged them. Opening an existing file resumes its queue."""

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


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message on its way to the broker."""

    topic: str
    payload: bytes
    retain: bool = False
    telemetry: bool = False
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    message: Outgoing


class MessageStore:
    def __init__(self, path: Path | str, max_messages: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.count = int(self._db.execute("SELECT count(*) FROM queue").fetchone()[0])
        self.critical = int(
            self._db.execute("SELECT count(*) FROM queue WHERE critical").fetchone()[0])

    def append(self, messages: Sequence[Outgoing]) -> int:
        """Store a batch in order; returns the bulk messages dropped to stay in bound."""
        if not messages:
            return 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO queue (topic, payload, retain, telemetry, critical) "
                "VALUES (?, ?, ?, ?, ?)",
                [(m.topic, m.payload, m.retain, m.telemetry, m.critical) for m in messages])
            self.count += len(messages)
            self.critical += sum(1 for m in messages if m.critical)
            excess = min(self.count - self.max_messages, self.count - self.critical)
            dropped = 0
            if excess > 0:
                cur = self._db.execute(
                    "DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE NOT critical "
                    "ORDER BY id LIMIT ?)", (excess,))
                dropped = cur.rowcount
                self.count -= dropped
        return dropped

    def oldest(self, limit: int) -> list[Stored]:
        rows = self._db.execute(
            "SELECT id, topic, payload, retain, telemetry, critical FROM queue "
            "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Stored(r[0], Outgoing(r[1], bytes(r[2]), bool(r[3]), bool(r[4]), bool(r[5])))
                for r in rows]

    def delete(self, rows: Sequence[Stored]) -> None:
        if not rows:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for i in range(0, len(rows), 500):
                chunk = rows[i : i + 500]
                marks = ",".join("?" * len(chunk))
                cur = self._db.execute(f"DELETE FROM queue WHERE id IN ({marks})",
                                       [r.id for r in chunk])
                self.count -= cur.rowcount  # a bulk row may have been dropped meanwhile
            self.critical -= sum(1 for r in rows if r.message.critical)

    def close(self) -> None:
        self._db.close()
