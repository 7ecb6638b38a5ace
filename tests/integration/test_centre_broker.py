"""The centre's MQTT broker, the chosen engine (RabbitMQ 3.10, quorum-queue sessions), on
three machines in network namespaces, with the clients on a fourth: a publisher with the
gateway's client and login, and a subscriber with ingest's client, login and persistent
session (stack.centre.probe), both over TLS and MQTT 3.1.1 with every node in their list.

Under steady load the machine of the node the subscriber is on is killed the hard way (link
cut, every process SIGKILLed): every seq the broker acknowledged to the publisher reaches
the subscriber at least once, over a new connection to another node. The machine comes
back and its node rejoins; then the subscriber's new node is cut off by a partition (its
processes keep running: RabbitMQ's pause_minority pauses it) and healed: again nothing
acknowledged is lost. Before that, the logins and permissions: an anonymous client is
refused, a gateway cannot write into another gateway's subtree (RabbitMQ closes its
connection), rules cannot forge a gateway's status; what a gateway writes in its own
subtree reaches ingest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from facility.mqtt import MqttClient
from facility.mqtt_endpoint import MqttEndpoint
from facility.mqtt_session import MqttSession
from facility.site import Site, load_site
from stack.broker_config import gateway_user, ingest_user, rules_user
from stack.centre.broker_cluster import BrokerCluster, start_broker
from stack.centre.machines import Centre, Machine, skip_reason
from stack.centre.probe import ProbeRecord

ROOT = Path(__file__).resolve().parents[2]
BROKERS = ["m1", "m2", "m3"]
RATE = "100"  # messages/s: steady load without starving the three nodes on two cores


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with Centre.create(4, tmp_path) as made:
        yield made


def wait(what: str, check: Callable[[], object], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.2)


class Probes:
    def __init__(self, client: Machine, broker: BrokerCluster, site: Site, work: Path) -> None:
        self.client, self.broker, self.site, self.work = client, broker, site, work
        self.pub_file, self.sub_file = work / "pub.txt", work / "sub.txt"
        self.topic = f"facility/v1/{site.id}/gw-a/probe/telemetry"

    def start(self, role: str, user: str, machines: list[str], client_id: str,
              *extra: str) -> None:
        env = os.environ | self.broker.env(user) | {
            "FACILITY_MQTT_URL": self.broker.url(machines), "FACILITY_LOG_LEVEL": "INFO"}
        out = self.sub_file if role == "subscribe" else self.pub_file
        self.client.start(role, [sys.executable, "-m", "stack.centre.probe", role, "--topic",
                                 self.topic, "--client-id", client_id, "--out", str(out),
                                 *extra], env=env, cwd=ROOT)

    def record(self) -> ProbeRecord:
        return ProbeRecord.read(self.pub_file, self.sub_file)

    def node(self) -> Machine:
        """The machine of the node the subscriber is connected to now."""
        url = self.record().connections[-1][0]
        return self.broker.centre.by_address(url.split("//")[1].split(":")[0])

    def received_more(self, n: int) -> Callable[[], bool]:
        start = len(self.record().received)
        return lambda: len(self.record().received) >= start + n

    def reconnected(self) -> Callable[[], bool]:
        start = len(self.record().connections)
        return lambda: len(self.record().connections) > start

    def nothing_lost(self) -> bool:
        rec = self.record()
        return not rec.lost and len(rec.acked) > 0


async def refused(endpoint: MqttEndpoint, client_id: str, topic: str | None) -> bool:
    """True if the broker refuses the login (topic None: the first attempt fails) or the
    publish on ``topic`` (the connection is closed before any PUBACK)."""
    async with MqttClient(endpoint, client_id, protocol="3.1.1", reconnect_max_s=5) as c:
        async with asyncio.timeout(20):
            while not (c.connected.is_set() or c.nodes.round_failed):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if topic is None or not c.connected.is_set():
                return not c.connected.is_set()
            puback = c.publish_nowait(topic, b"forged")
            while not puback.done() and c.connected.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return not puback.done()


async def check_permissions(broker: BrokerCluster, site: Site) -> list[bytes]:
    """What ingest receives of a forged and an honest publish; asserts the refusals."""
    topic = f"facility/v1/{site.id}/gw-a/acl/telemetry"
    sub = MqttSession(broker.endpoint(ingest_user(site.id)), f"ingest-{site.id}-acl", [topic],
                      protocol="3.1.1")
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 30)
        anonymous = MqttEndpoint(broker.node_url("m1"), ca_file=broker.secrets.ca_file)
        assert await refused(anonymous, "anonymous", None)
        assert await refused(broker.endpoint(gateway_user(site.id, "gw-b")), "gw-b-acl", topic)
        assert await refused(broker.endpoint(rules_user(site.id)), "rules-demo-pub-acl",
                             f"facility/v1/{site.id}/gw-a/status")
        async with MqttClient(broker.endpoint(gateway_user(site.id, "gw-a")), "gw-a-acl",
                              protocol="3.1.1") as own:
            await own.wait_connected(10)
            await own.publish(topic, b"own", timeout_s=10)
        async with asyncio.timeout(20):
            while sub.pending == 0:  # noqa: ASYNC110 - the session offers no other signal
                await asyncio.sleep(0.05)
        return [d.payload for d in sub.take()]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sub.close()


# start (three nodes one after the other), a kill, a restart, a partition: ~60 s, twice that
# loaded; a node that does not start says why (every node's log) before this ends the test
@pytest.mark.timeout(300)
def test_nothing_acknowledged_is_lost_when_the_subscribers_node_dies_or_is_cut_off(
    centre: Centre, tmp_path: Path,
) -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    broker = start_broker(centre, tmp_path / "broker", engine="rabbitmq", sites=[site],
                          machines=BROKERS, timeout_s=60)
    # the clients' sockets live in m4's namespace: the loop runs in a thread that entered it
    assert centre.machine("m4").call(lambda: asyncio.run(check_permissions(broker, site))) \
        == [b"own"]
    probes = Probes(centre.machine("m4"), broker, site, tmp_path)
    probes.start("subscribe", ingest_user(site.id), BROKERS, f"ingest-{site.id}")
    wait("the subscriber connected", lambda: probes.record().connections, 60)
    probes.start("publish", gateway_user(site.id, "gw-a"), ["m2", "m3", "m1"],
                 "gateway-probe", "--rate", RATE, "--window", "20")
    wait("messages flowing", probes.received_more(100), 60)

    # 1. the subscriber's machine dies under load
    victim = probes.node()
    back = probes.reconnected()
    victim.kill()
    wait("the subscriber on another node", back, 60)
    assert probes.node() is not victim
    wait("messages flowing again", probes.received_more(100), 60)
    wait("every acknowledged seq received", probes.nothing_lost, 60)

    # the machine comes back; its node rejoins the cluster, every session's queue whole again
    victim.revive()
    broker.restart(victim.name)

    # 2. the subscriber's new node is cut off, its processes running; then healed
    cut = probes.node()
    back = probes.reconnected()
    cut.partition()
    try:
        wait("the subscriber on a node of the majority", back, 60)
        assert probes.node() is not cut
        wait("messages flowing again", probes.received_more(100), 60)
    finally:
        cut.heal()
    wait("every acknowledged seq received", probes.nothing_lost, 60)
    rec = probes.record()
    assert len(rec.acked) > 300 and rec.lost == []
