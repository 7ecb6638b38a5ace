"""The `facility` command as an operator runs it: exit codes and the messages it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from stack.embedded.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def _facility(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", *args], capture_output=True, text=True,
        env=os.environ | (env or {}), timeout=60, cwd=ROOT,
    )


@pytest.fixture
def empty_database(pg_server: PostgresServer) -> Iterator[str]:
    name = f"c_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_db_migrate_applies_the_schema_and_services_refuse_before_it(
    empty_database: str, mqtt_url: str,
) -> None:
    refused = _facility("ingest", "--database-url", empty_database, "--mqtt-url", mqtt_url)
    assert refused.returncode == 2
    assert "run `facility db migrate`" in refused.stderr

    done = _facility("db", "migrate", "--database-url", empty_database)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_database) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY 1")]
    assert names[0] == "0001_core"


def test_bad_site_file_is_refused_with_file_and_entry(tmp_path: Path, database_url: str) -> None:
    site = yaml.safe_load((ROOT / "sites" / "demo.yaml").read_text())
    site["profiles_dir"] = str(ROOT / "profiles")
    site["buildings"][1]["devices"][0]["address"]["port"] = 70000
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(site))
    out = _facility("rules", "--site", str(path), "--database-url", database_url)
    assert out.returncode == 2
    assert str(path) in out.stderr
    assert "buildings[1].devices[0].address" in out.stderr


def test_unknown_gateway_is_refused() -> None:
    out = _facility("gateway", "--gateway", "gw-z", "--site", "sites/demo.yaml")
    assert out.returncode == 2
    assert "gateway gw-z is not defined" in out.stderr


def test_rules_for_an_unknown_gateway_are_refused() -> None:
    out = _facility("rules", "--site", "sites/demo.yaml", "--gateways", "gw-a,gw-z",
                    "--database-url", "postgresql://facility@127.0.0.1:1/x")
    assert out.returncode == 2, out.stderr
    assert "--gateways: no gateway gw-z at site demo (defined: gw-a, gw-b)" in out.stderr
    assert "Traceback" not in out.stderr


def test_unreachable_database_is_a_clear_error() -> None:
    out = _facility("api", "--database-url", "postgresql://facility@127.0.0.1:1/x",
                    "--port", "1")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr


def test_bad_mqtt_url_is_refused_at_start() -> None:
    out = _facility("gateway", "--gateway", "gw-a", env={"FACILITY_MQTT_URL": "http://x"})
    assert out.returncode == 2
    assert "not an MQTT URL" in out.stderr
