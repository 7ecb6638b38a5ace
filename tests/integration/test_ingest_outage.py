"""Ingest while PostgreSQL is unreachable: nothing is acknowledged, the batch is retried and
stored when the database is back, and what was left unstored at shutdown is redelivered to
the next session. The outage is made on the real server: the test database stops accepting
connections and ingest's connection is terminated."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psycopg
import pytest

from stack.embedded.broker import Broker
from stack.embedded.postgres import PostgresServer
from tests.integration.gateway_support import until
from tests.integration.ingest_support import (
    at,
    eventually,
    publisher,
    rows,
    running_ingest,
    telemetry,
    topic,
    write_site,
)

FLOOR = ("SELECT t.value, t.time FROM telemetry t JOIN points p ON p.id = t.point_id"
         " WHERE p.name = 'car_floor' ORDER BY t.time")


def set_database_reachable(pg: PostgresServer, database_url: str, reachable: bool) -> None:
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(reachable).lower()}')
        if not reachable:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


async def logged(caplog: pytest.LogCaptureFixture, text: str, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not any(text in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # log records are polled; there is no event to await


def count_logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


async def test_batch_is_kept_while_the_database_is_down_and_stored_when_back(
    tmp_path: Path, pg_server: PostgresServer, database_url: str, mqtt_url: str,
    mqtt_protocol: str, site_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    site = write_site(tmp_path, site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(topic(site_id, "telemetry"), telemetry(1, {"car_floor": 1}))
        await eventually(database_url, rows(FLOOR), lambda r: len(r) == 1)
        set_database_reachable(pg_server, database_url, False)
        try:
            await pub.publish(topic(site_id, "telemetry"), telemetry(2, {"car_floor": 2}))
            await pub.publish(topic(site_id, "telemetry"), telemetry(3, {"car_floor": 3}))
            await logged(caplog, "database unreachable")
            await until(lambda: counters.write_retries >= 3)  # a few retries while down
            assert counters.batches == 1  # nothing more committed (nor acknowledged)
        finally:
            set_database_reachable(pg_server, database_url, True)
        got = await eventually(database_url, rows(FLOOR), lambda r: len(r) == 3, timeout_s=15)
        await logged(caplog, "database back after")
    assert got == [(1.0, at(1)), (2.0, at(2)), (3.0, at(3))]
    assert count_logged(caplog, "database unreachable") == 1
    assert count_logged(caplog, "database back after") == 1


async def test_messages_not_stored_at_shutdown_are_redelivered_to_the_next_session(
    tmp_path: Path, pg_server: PostgresServer, broker: Broker, database_url: str, mqtt_url: str,
    mqtt_protocol: str, site_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    site = write_site(tmp_path, site_id)
    async with publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub:
        async with running_ingest(site, database_url, mqtt_url, mqtt_protocol):
            set_database_reachable(pg_server, database_url, False)
            try:
                await pub.publish(topic(site_id, "telemetry"), telemetry(5, {"car_floor": 5}))
                await logged(caplog, "database unreachable")
            except BaseException:
                set_database_reachable(pg_server, database_url, True)
                raise
        assert count_logged(caplog, "left unacknowledged") == 1
        set_database_reachable(pg_server, database_url, True)
        async with running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters:
            got = await eventually(database_url, rows(FLOOR), lambda r: len(r) == 1)
    assert got == [(5.0, at(5))]
    assert counters.messages_in == 1  # redelivered by the broker from the persistent session
