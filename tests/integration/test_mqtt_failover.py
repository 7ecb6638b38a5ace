"""Both MQTT clients given a list of brokers, against three private mosquittos on loopback:
a node killed with SIGKILL (connection reset) or paused with SIGSTOP (a machine gone: no
reset, no answer) is left for the next one, over MQTT 5 and 3.1.1, with TLS and the login
kept; a first node that is down is skipped at start. The mosquittos are independent (no
cluster): what moves is the client, which is what these tests are about."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from facility.mqtt import Message, MqttClient
from facility.mqtt_endpoint import MqttEndpoint, MqttUrl
from facility.mqtt_session import MqttSession
from facility.ports import free_port
from facility.site import Site
from gateway.counters import GatewayCounters
from gateway.service import run_gateway
from simulators.modbus_server import ModbusDeviceServer
from stack.broker_config import ingest_user
from stack.embedded.broker import Broker
from tests.integration.gateway_support import until, write_site
from tests.integration.secure_broker_support import start_secure_broker
from tests.integration.test_gateway_buffer import ELEVATOR, elevator_site, keep_changing

KEEPALIVE_S, CONNECT_TIMEOUT_S = 1, 1.0  # a silent node is left within about 2 s


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[Broker]]:
    started: list[Broker] = []
    try:
        for i in range(3):
            b = Broker(tmp_path / f"node{i}", free_port())
            b.start()
            started.append(b)
        yield started
    finally:
        for b in started:
            resume(b)
            b.stop()


def endpoint(nodes: list[Broker]) -> MqttEndpoint:
    ep = MqttEndpoint.of(",".join(b.url for b in nodes))
    return replace(ep, keepalive_s=KEEPALIVE_S, connect_timeout_s=CONNECT_TIMEOUT_S)


def kill(b: Broker) -> None:
    assert b.process is not None
    b.process.kill()
    b.process.wait()


def pause(b: Broker) -> None:
    assert b.process is not None
    os.kill(b.process.pid, signal.SIGSTOP)


def resume(b: Broker) -> None:
    if b.process is not None and b.process.poll() is None:
        os.kill(b.process.pid, signal.SIGCONT)


@pytest.fixture
async def watchers(brokers: list[Broker], site_id: str) -> AsyncIterator[list[list[Message]]]:
    """A subscriber on each node, so a test sees where each message went."""
    boxes: list[list[Message]] = [[] for _ in brokers]
    clients = [MqttClient(b.url, f"w{i}-{site_id}") for i, b in enumerate(brokers)]
    tasks = []
    for client, box in zip(clients, boxes, strict=True):
        await client.start()
        await client.subscribe(f"facility/v1/{site_id}/#")
        await client.wait_connected(10)
        await client.wait_subscribed(10)
        tasks.append(asyncio.create_task(_collect(client, box)))
    yield boxes
    for task in tasks:
        task.cancel()
    for i, client in enumerate(clients):
        if brokers[i].process is not None and brokers[i].process.poll() is None:  # type: ignore[union-attr]
            resume(brokers[i])
        await client.close()


async def _collect(client: MqttClient, box: list[Message]) -> None:
    async for m in client.messages():
        box.append(m)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_publisher_moves_on_when_its_node_is_killed(
    brokers: list[Broker], watchers: list[list[Message]], site_id: str, protocol: str,
) -> None:
    topic = f"facility/v1/{site_id}/alarms"
    async with MqttClient(endpoint(brokers), f"p-{uuid.uuid4().hex[:8]}", protocol=protocol,
                          reconnect_max_s=1) as pub:
        await pub.wait_connected(10)
        assert pub.url == MqttUrl.parse(brokers[0].url)
        await pub.publish(topic, b"before", timeout_s=10)
        kill(brokers[0])
        # acknowledged by the next node, with no call of ours in between
        await pub.publish(topic, b"after", timeout_s=30)
        assert pub.url == MqttUrl.parse(brokers[1].url)
    await until(lambda: any(m.payload == b"after" for m in watchers[1]), 10)
    assert [m.payload for m in watchers[0]] == [b"before"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_subscriber_leaves_a_silent_node_and_skips_a_dead_one(
    brokers: list[Broker], site_id: str, protocol: str,
) -> None:
    """SIGSTOP: the node neither answers nor resets, as a machine that is gone; the next
    node is killed too, so the session has to go round to the third."""
    topic = f"facility/v1/{site_id}/alarms"
    session = MqttSession(endpoint(brokers), f"s-{uuid.uuid4().hex[:8]}", [topic],
                          protocol=protocol, backoff_initial_s=0.1, backoff_max_s=0.5)
    task = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(session.subscribed.wait(), 10)
        assert session.url == MqttUrl.parse(brokers[0].url)
        kill(brokers[1])
        pause(brokers[0])
        await until(lambda: session.connections >= 2, 30)
        assert session.url == MqttUrl.parse(brokers[2].url)
        async with MqttClient(brokers[2].url, f"p-{site_id}", protocol=protocol) as pub:
            await pub.wait_connected(10)
            await pub.publish(topic, b"on node 3", timeout_s=10)
        await until(lambda: session.pending >= 1, 10)
        got = session.take()
        assert [d.payload for d in got] == [b"on node 3"]
        assert session.ack(got) == 1
    finally:
        task.cancel()
        await session.close()


async def test_tls_and_login_are_kept_on_the_next_node(tmp_path: Path, site_id: str) -> None:
    site: Site = write_site(tmp_path, site_id, (
        "      - {id: lift, type: elevator, profile: elevator,"
        " address: {protocol: modbus, port: 1502}}\n"))
    with start_secure_broker(site, tmp_path / "secure") as secure:
        assert secure.broker.security is not None
        second = Broker(tmp_path / "second", free_port(), security=secure.broker.security)
        second.start()
        try:
            user = ingest_user(site_id)
            first = secure.endpoint(user)
            ep = replace(first, others=(MqttUrl.parse(second.url),), keepalive_s=KEEPALIVE_S,
                         connect_timeout_s=CONNECT_TIMEOUT_S)
            assert isinstance(ep.password, SecretStr)
            topic = f"facility/v1/{site_id}/#"
            session = MqttSession(ep, f"ingest-{site_id}", [topic], protocol="3.1.1",
                                  backoff_initial_s=0.1, backoff_max_s=0.5)
            task = asyncio.create_task(session.run())
            try:
                await asyncio.wait_for(session.subscribed.wait(), 10)
                kill(secure.broker)
                await until(lambda: session.connections >= 2, 30)
                assert session.url == MqttUrl.parse(second.url)
                assert f"u'{user}'" in second.log_path.read_text(errors="replace")
            finally:
                task.cancel()
                await session.close()
        finally:
            second.stop()


def seqs(box: list[Message], session: str) -> set[int]:
    out = set()
    for m in box:
        if m.topic.endswith("/telemetry"):
            body = json.loads(m.payload)
            if body["session"] == session:
                out.add(int(body["seq"]))
    return out


async def test_gateway_store_and_forward_carries_on_at_the_next_node(
    tmp_path: Path, brokers: list[Broker], watchers: list[list[Message]], site_id: str,
) -> None:
    """The gateway's node goes silent (SIGSTOP): the gateway leaves it within keepalives,
    resends what was in flight to the next node and goes on there; once the silent node
    answers again, every seq of the session is on one node or the other."""
    port = free_port()
    site = elevator_site(tmp_path, site_id, port)
    counters = GatewayCounters()
    async with ModbusDeviceServer(site.devices["lift"], ELEVATOR) as server:
        changer = asyncio.create_task(keep_changing(server))
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", endpoint(brokers[:2]), counters=counters,
            state_dir=tmp_path / "state"))
        try:
            await until(lambda: len(seqs(watchers[0], _session(watchers[0]))) >= 10)
            session = _session(watchers[0])
            pause(brokers[0])
            await until(lambda: len(seqs(watchers[1], session)) >= 20, 30)
            resume(brokers[0])
            await until(lambda: counters.replayed >= counters.queued, 30)
            top = max(seqs(watchers[1], session))

            def missing() -> set[int]:
                return (set(range(1, top + 1)) - seqs(watchers[0], session)
                        - seqs(watchers[1], session))

            with contextlib.suppress(TimeoutError):  # the last replays on their way
                await until(lambda: not missing(), 10)
            assert not missing(), f"lost seqs {sorted(missing())[:20]}"
        finally:
            gateway.cancel()
            changer.cancel()
            await asyncio.gather(gateway, changer, return_exceptions=True)


def _session(box: list[Message]) -> str:
    for m in box:
        if m.topic.endswith("/telemetry"):
            return str(json.loads(m.payload)["session"])
    return ""


async def test_gateway_leaves_a_node_that_stops_acknowledging_before_its_keepalive(
    tmp_path: Path, brokers: list[Broker], watchers: list[list[Message]], site_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node that keeps the connection but acknowledges nothing (a cluster's node stuck on
    the queues of a node that died; here a SIGSTOPped mosquitto, with a keepalive of 60 s so
    that the keepalive cannot be what moves the gateway): after ``node_stall_s`` (1 s here)
    without a PUBACK while publishes wait, the gateway moves to the next node and its
    telemetry carries on there, long before 1.5 keepalives (90 s)."""
    port = free_port()
    site = write_site(tmp_path, site_id, (
        f"      - {{id: lift, type: elevator, profile: elevator, poll_interval_s: 0.1,"
        f" timeout_s: 0.5, address: {{protocol: modbus, port: {port}}}}}\n"
    ), report_period_s=0.3, gateway_options=", buffer: {node_stall_s: 1}")
    slow_keepalive = replace(endpoint(brokers[:2]), keepalive_s=60)
    counters = GatewayCounters()
    async with ModbusDeviceServer(site.devices["lift"], ELEVATOR) as server:
        changer = asyncio.create_task(keep_changing(server))
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", slow_keepalive, counters=counters, state_dir=tmp_path / "state"))
        try:
            await until(lambda: len(seqs(watchers[0], _session(watchers[0]))) >= 10)
            session = _session(watchers[0])
            pause(brokers[0])
            await until(lambda: len(seqs(watchers[1], session)) >= 20, 30)
        finally:
            gateway.cancel()
            changer.cancel()
            await asyncio.gather(gateway, changer, return_exceptions=True)
    moves = [r.getMessage() for r in caplog.records if "moving on to the next node" in r.message]
    assert len(moves) == 1 and "no PUBACK for" in moves[0], moves
