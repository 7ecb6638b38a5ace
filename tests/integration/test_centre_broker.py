"""The centre's MQTT broker, the chosen engine (RabbitMQ 3.10, quorum-queue sessions), on
three machines in network namespaces, with the clients on a fourth: a publisher with the
gateway's client and login, and a subscriber with ingest's client, login and persistent
session (stack.centre.probe), both over TLS and MQTT 3.1.1 with every node in their list.

Under steady load the machine of the node the subscriber is on is killed the hard way (link
cut, every process SIGKILLed): every seq the broker acknowledged to the publisher reaches
the subscriber at least once, over a new connection to another node. The machine comes
back and its node rejoins; then the subscriber's new node is cut off by a partition (its
processes keep running: RabbitMQ's pause_minority pauses it) and healed: again nothing
acknowledged is lost."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from facility.site import Site, load_site
from stack.broker_config import gateway_user, ingest_user
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


def test_nothing_acknowledged_is_lost_when_the_subscribers_node_dies_or_is_cut_off(
    centre: Centre, tmp_path: Path,
) -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    broker = start_broker(centre, tmp_path / "broker", engine="rabbitmq", sites=[site],
                          machines=BROKERS)
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

    # the machine comes back; its node rejoins the cluster
    victim.revive()
    broker.restart(victim.name)
    broker.rabbitmqctl(victim.name, "await_online_nodes", "3")

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
