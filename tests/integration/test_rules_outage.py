"""The rules service while its database or its broker goes away, on the real servers: the
test database stops accepting connections (and the service's connection is terminated), or
a private mosquitto is stopped and started on the same port. Nothing accepted is lost: the
alarm and its one work order appear once the database or the broker is back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psycopg
import pytest

from facility import topics
from facility.ports import free_port
from facility.topics import TopicKind
from stack.embedded.broker import Broker
from stack.embedded.postgres import PostgresServer
from tests.integration.gateway_support import until
from tests.integration.test_ingest_outage import count_logged, logged, set_database_reachable
from tests.integration.test_rules_service import (
    FREE,
    TRAPPED,
    Sender,
    eventually,
    make_site,
    publisher,
    query,
    rules_running,
)


async def test_a_fault_reported_while_the_database_is_down_becomes_its_alarm_when_back(
    tmp_path: Path, pg_server: PostgresServer, database_url: str, mqtt_url: str,
    mqtt_protocol: str, site_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rules")
    caplog.set_level(logging.DEBUG, logger="rules.database_guard")  # each failed reconnect
    site = make_site(tmp_path, site_id, on_delay_s=0.3)
    lift = f"{site_id}-lift"
    topic = topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", lift)
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol) as task:
        send = Sender(pub, site)
        await send.telemetry(lift, FREE)
        set_database_reachable(pg_server, database_url, False)
        try:
            await pub.publish(topic, b'{"ts": "not a time"}', qos=1, timeout_s=5)
            await send.telemetry(lift, TRAPPED)  # once: the gateway sends changes only
            await logged(caplog, "database unreachable")
            # several retries while down (each a failed reconnect); the service lives on
            await until(lambda: count_logged(caplog, "database reconnect failed") >= 3)
            assert not task.done()
        finally:
            set_database_reachable(pg_server, database_url, True)
        await eventually(database_url, "SELECT id FROM work_orders", timeout_s=20)
        await logged(caplog, "database back after")
    assert await query(database_url, "SELECT source, alarm_type, active FROM alarms") == [
        (lift, "entrapment", True)]
    assert len(await query(database_url, "SELECT id FROM work_orders")) == 1
    letters = await eventually(database_url, "SELECT consumer, topic FROM dead_letters")
    assert letters == [("rules", topic)]  # refused, and kept, though it came while down
    assert count_logged(caplog, "database unreachable") == 1


async def test_the_service_reconnects_after_a_broker_restart_and_raises_what_follows(
    tmp_path: Path, database_url: str, mqtt_protocol: str, site_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker restarts (same port, persistent sessions kept in its store): the rules
    service reconnects by itself, and a fault published after the restart is raised."""
    caplog.set_level(logging.INFO, logger="facility.mqtt_session")
    broker = Broker(tmp_path / "broker", free_port(), prefer="mosquitto")
    broker.start()
    try:
        site = make_site(tmp_path, site_id, on_delay_s=0.3)
        lift = f"{site_id}-lift"
        async with rules_running(site, database_url, broker.url, mqtt_protocol) as task:
            await asyncio.to_thread(broker.stop)
            await logged(caplog, "MQTT connection to")
            await asyncio.to_thread(broker.start)
            await logged(caplog, "back after", timeout_s=30)
            async with publisher(broker.url, mqtt_protocol) as pub:
                send = Sender(pub, site)
                await eventually(database_url, "SELECT id FROM work_orders",
                                 while_waiting=lambda: send.telemetry(lift, TRAPPED),
                                 timeout_s=20)
            assert not task.done()
    finally:
        broker.stop()
    assert await query(database_url, "SELECT source, alarm_type FROM alarms") == [
        (lift, "entrapment")]


def set_database_read_only(pg: PostgresServer, database_url: str, read_only: bool) -> None:
    """What a standby (or a primary being demoted) answers: every write fails with 25006
    read_only_sql_transaction. Sessions are ended so that new ones take the setting."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                     f'{"on" if read_only else "off"}')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def rollbacks(pg: PostgresServer, database_url: str) -> int:
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT xact_rollback FROM pg_stat_database WHERE datname = %s",
                           (name,)).fetchone()
    return int(row[0]) if row else 0


async def test_a_read_only_standby_is_waited_out_never_a_dead_letter(
    tmp_path: Path, pg_server: PostgresServer, database_url: str, mqtt_url: str,
    mqtt_protocol: str, site_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """During a failover the rules' connection may reach a node that answers "read-only
    transaction": the message is held (unacknowledged) however many times that happens,
    never dead-lettered after a few tries; once a primary takes writes, its alarm and one
    work order are stored."""
    caplog.set_level(logging.INFO, logger="rules")
    site = make_site(tmp_path, site_id, on_delay_s=0.3)
    lift = f"{site_id}-lift"
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol) as task:
        send = Sender(pub, site)
        await send.telemetry(lift, FREE)
        set_database_read_only(pg_server, database_url, True)
        try:
            before = await asyncio.to_thread(rollbacks, pg_server, database_url)
            await send.telemetry(lift, TRAPPED)
            async with asyncio.timeout(30):  # well past the 3 tries of a refused message
                # the server's statistics are polled; there is no event to await
                while await asyncio.to_thread(rollbacks, pg_server, database_url) \
                        < before + 6:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            assert not task.done()
            assert await query(database_url, "SELECT id FROM dead_letters") == []
        finally:
            set_database_read_only(pg_server, database_url, False)
        await eventually(database_url, "SELECT id FROM work_orders", timeout_s=20)
    assert await query(database_url, "SELECT source, alarm_type FROM alarms") == [
        (lift, "entrapment")]
    assert len(await query(database_url, "SELECT id FROM work_orders")) == 1
    assert await query(database_url, "SELECT id FROM dead_letters") == []
    assert count_logged(caplog, "refused message") == 0
    assert count_logged(caplog, "database back after") == 1
