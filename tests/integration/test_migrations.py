from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from facility.db.migrate import SchemaBehind, available, check, migrate
from facility.db.registry import load_ids, sync_site
from facility.site import load_site
from stack.embedded.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_database(pg_server: PostgresServer) -> Iterator[str]:
    name = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_check_refuses_a_schema_that_is_behind(empty_database: str) -> None:
    with pytest.raises(SchemaBehind) as err:
        check(empty_database)
    assert err.value.missing == [name for name, _ in available()]


def test_migrate_applies_each_migration_once(empty_database: str) -> None:
    first = migrate(empty_database)
    assert first == [name for name, _ in available()]
    assert migrate(empty_database) == []
    check(empty_database)


def test_registry_sync_is_idempotent(database_url: str) -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    with psycopg.connect(database_url) as conn:
        sync_site(conn, site)
        sync_site(conn, site)
        ids = load_ids(conn, "demo")
    assert set(ids.devices) == set(site.devices)
    n_points = sum(len(d.profile.points) for d in site.devices.values())
    assert len(ids.points) == n_points
    assert ids.point_types[ids.points[("a-elevator-1", "door_closed")]] == "bool"
