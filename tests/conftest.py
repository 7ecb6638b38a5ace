"""Shared fixtures: a real PostgreSQL server and a real MQTT broker for the whole session,
on ephemeral loopback ports, stopped by pid at the end; a fresh migrated database per test."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from facility.db.migrate import migrate
from facility.ports import free_port
from stack.embedded.broker import Broker
from stack.embedded.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="facility-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(tmp_root: Path) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (durability off: tests do not need it)."""
    server = PostgresServer(
        tmp_root / "pgdata", free_port(),
        settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                  "max_connections": "200"},
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh database with every migration applied, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_server.url(name)
    migrate(url)
    yield url
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def broker(tmp_root: Path) -> Iterator[Broker]:
    """mosquitto (`make test` installs it; without it every test that needs a broker fails
    with the apt command to run, never skips)."""
    b = Broker(tmp_root / "broker", free_port(), prefer="mosquitto")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def mqtt_url(broker: Broker) -> str:
    return broker.url


@pytest.fixture
def mqtt_protocol(broker: Broker) -> str:
    """The protocol the services speak by default (3.1.1 has tests of its own)."""
    return "5"


@pytest.fixture
def site_id() -> str:
    """A site id unique to the test, so topics of parallel tests never meet."""
    return f"t{uuid.uuid4().hex[:10]}"
