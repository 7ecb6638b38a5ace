"""Schema migrations: SQL files in facility/db/migrations applied in name order, each once,
each in its own transaction, recorded in schema_migrations. Services call ``check`` at
start and refuse to run against a schema that is behind."""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

from facility.db.connect import connect_sync

log = logging.getLogger(__name__)
_LOCK_KEY = 7_411_001  # advisory lock: two services migrating at once take turns


class SchemaBehind(RuntimeError):
    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"database schema is missing migrations {', '.join(missing)}: "
            "run `facility db migrate`"
        )


def available() -> list[tuple[str, str]]:
    """(name, sql) of every migration shipped with the package, in order."""
    folder = resources.files("facility.db") / "migrations"
    files = sorted(
        (f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    )
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def _applied(conn: psycopg.Connection) -> set[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    return {r[0] for r in conn.execute("SELECT name FROM schema_migrations").fetchall()}


def migrate(dsn: str) -> list[str]:
    """Apply the migrations not yet applied; returns their names."""
    done: list[str] = []
    with connect_sync(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            applied = _applied(conn)
            for name, sql in available():
                if name in applied:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                log.info("applied migration %s", name)
                done.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def check(dsn: str) -> None:
    """Raise SchemaBehind if a shipped migration has not been applied."""
    with connect_sync(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        applied = _applied(conn) if exists and exists[0] else set()
    missing = [name for name, _ in available() if name not in applied]
    if missing:
        raise SchemaBehind(missing)
