"""The centre's database surviving the loss of a machine, in real namespaces: three
machines with etcd and Patroni (synchronous mode), and a client machine with mosquitto,
``facility ingest`` and ``facility rules`` as real processes on the multi-host URL.

Under steady telemetry (QoS 1, every message numbered), the primary's machine is killed
the hard way (link cut, every process SIGKILLed); in the second case the new primary's
machine is cut off by a partition and then brought back. In both: a new primary is
elected, every message the broker acknowledged is stored once, ingest and rules live on,
rules dead-letters nothing while it waits out the failover (read-only standbys and lost
connections included), and an entrapment that begins during the failover is raised once,
with one work order. After the partition heals, the old primary rejoins as a replica: one
leader, never two."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from facility.mqtt import MqttClient
from tests.integration.centre_support import (
    Estate,
    Publisher,
    estate_for,
    rows,
    stored_times,
    until,
)

FAILOVER_S = 90.0  # Patroni's ttl is 20 s; generous for a loaded 2-core machine
# a cluster start (~15 s) and a failover (~25 s) with its rejoin each; 120 s is the default
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    with estate_for(tmp_path_factory.mktemp("centre-db"), "centre-db") as made:
        yield made


def lose_the_primary(estate: Estate, how: str, lift: str) -> str:
    """Kill or partition the leader's machine while ``lift``'s telemetry flows; its
    entrapment begins during the failover. Returns the old leader."""
    old = estate.db.wait_leader(FAILOVER_S)

    async def body() -> None:
        async with MqttClient(estate.mqtt_url, f"centre-pub-{how}") as client:
            await client.wait_connected(10)
            pub = Publisher(client, estate, lift)
            task = asyncio.create_task(pub.run())
            await until(lambda: _stored_at_least(estate, lift, 20), FAILOVER_S,
                        "telemetry stored before the failover")
            machine = estate.centre.machine(old)
            await asyncio.to_thread(machine.kill if how == "kill" else machine.partition)
            pub.trap()  # the fault begins while the database fails over
            new = await asyncio.to_thread(estate.db.wait_leader, FAILOVER_S, other_than=old)
            assert new != old
            sent = len(pub.acked)
            await pub.wait_count(sent + 20, timeout_s=FAILOVER_S)  # the broker never stopped
            pub.stopped.set()
            await task
            try:
                await until(lambda: _all_stored(estate, pub), FAILOVER_S,
                            "every acknowledged message stored")
            except AssertionError as exc:
                missing = sorted(set(pub.acked) - set(await stored_times(estate.db.url(), lift)))
                raise AssertionError(f"{exc}: {len(missing)} of {len(pub.acked)} missing, "
                                     f"from {missing[0]} to {missing[-1]}") from None
            stored = await stored_times(estate.db.url(), lift)
            assert sorted(set(stored)) == stored  # once each
            assert set(pub.acked) <= set(stored)  # nothing acknowledged lost
            await until(lambda: _work_order(estate, lift), FAILOVER_S,
                        "the entrapment's alarm and work order")

    estate.run(body)
    return old


async def _stored_at_least(estate: Estate, lift: str, n: int) -> bool:
    return len(await stored_times(estate.db.url(), lift)) >= n


async def _all_stored(estate: Estate, pub: Publisher) -> bool:
    return set(pub.acked) <= set(await stored_times(estate.db.url(), pub.device))


async def _work_order(estate: Estate, lift: str) -> bool:
    return bool(await rows(estate.db.url(), "SELECT id FROM work_orders WHERE source = %s",
                           lift))


def assert_nothing_doubled_or_refused(estate: Estate, lift: str) -> None:
    async def body() -> None:
        url = estate.db.url()
        alarms = await rows(url, "SELECT alarm_type, repeat_count FROM alarms"
                                 " WHERE source = %s", lift)
        assert alarms == [("entrapment", 0)]  # one alarm, not even counted twice
        assert len(await rows(url, "SELECT id FROM work_orders WHERE source = %s", lift)) == 1
        assert await rows(url, "SELECT consumer, reason FROM dead_letters") == []

    estate.run(body)
    assert estate.alive("ingest") and estate.alive("rules")


def test_killing_the_primarys_machine_loses_nothing_acknowledged(estate: Estate) -> None:
    lift = estate.lift(1)
    old = lose_the_primary(estate, "kill", lift)
    assert estate.centre.machine(old).pids() == []
    assert_nothing_doubled_or_refused(estate, lift)
    estate.centre.machine(old).revive()  # back for the next case: it rejoins as a replica
    estate.db.restart(old)
    estate.db.wait_healthy(FAILOVER_S)


def test_a_partitioned_primary_is_replaced_and_rejoins_as_a_replica(estate: Estate) -> None:
    lift = estate.lift(2)
    old = lose_the_primary(estate, "partition", lift)
    assert estate.centre.machine(old).pids()  # cut off, not dead
    estate.centre.machine(old).heal()
    estate.db.wait_healthy(FAILOVER_S)
    assert estate.db.leader() != old
    assert_nothing_doubled_or_refused(estate, lift)
