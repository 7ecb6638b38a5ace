"""An active ingest and rules that keep the database but lose every broker node hand over
(``--broker-grace-s``). Two ingest and two rules processes of one site with ``--standby``
share one broker, each through a TCP link of its own (``link_support``); the links of the
two active ones are cut the hard way (SIGKILL of the relay: their sessions end, new
connections are refused) while a publisher keeps sending to the broker. The standbys take
the locks after the grace and not before (a blip shorter than the grace keeps the active),
raise the entrapment that starts after the cut once, with one work order; the cut-off
instances say so once, open no MQTT session and do not take the lock, even a free one,
while cut off; when their links are back they take over again; every message the broker
acknowledged is stored once. Also: a link gone silent (noticed by keepalive), a blip
shorter than the grace (the active stays), and a rules instance whose broker never answers
(it hands over and stands aside by itself)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from facility.db.active_lock import PROBE_S, ActiveLock, LockTiming
from facility.ports import free_port
from facility.stopping import Stopping
from rules.service import run_rules
from stack.embedded.broker import Broker
from tests.integration.chain_support import poll
from tests.integration.link_support import Link
from tests.integration.stop_support import start, wait_log
from tests.integration.test_active_standby import (
    Instance,
    Publisher,
    by_pid,
    every_acknowledged_stored,
    holder,
    until_held,
)
from tests.integration.test_rules_service import (
    FREE,
    PROCEDURES,
    TRAPPED,
    eventually,
    make_site,
    publisher,
    query,
)

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5
GRACE_S = 3.0
TIMING = LockTiming(poll_s=POLL_S, check_s=POLL_S, broker_grace_s=GRACE_S)
HANDOVER = "no MQTT broker reachable for 3 s"
SERVICES = ("ingest", "rules")


@contextlib.contextmanager
def links(tmp_path: Path, broker: Broker, services: tuple[str, ...] = SERVICES
          ) -> Iterator[dict[str, Link]]:
    made: dict[str, Link] = {}
    try:
        for service in services:
            for n in (1, 2):
                link = Link(broker.port, tmp_path / f"link-{service}-{n}.log")
                made[f"{service}-{n}"] = link
                link.restore()
        yield made
    finally:
        for link in made.values():
            link.cut()


@contextlib.asynccontextmanager
async def instances(tmp_path: Path, site_path: Path, env: dict[str, str],
                    through: dict[str, Link], services: tuple[str, ...] = SERVICES,
                    grace_s: float = GRACE_S) -> AsyncIterator[dict[str, list[Instance]]]:
    standby = ["--standby", "--lock-poll-s", str(POLL_S), "--broker-grace-s", str(grace_s)]
    argv = {"rules": ["rules", "--site", str(site_path), "--procedures", str(PROCEDURES),
                      *standby],
            "ingest": ["ingest", "--site", str(site_path), "--batch-ms", "50", *standby]}
    running: dict[str, list[Instance]] = {service: [] for service in services}
    try:
        for service in services:
            args = argv[service]
            for n in (1, 2):
                name = f"{service}-{n}"
                log = tmp_path / f"{name}.log"
                own = env | {"FACILITY_MQTT_URL": through[name].url}
                running[service].append(Instance(name, log, start(name, args, log, own, ROOT)))
        yield running
    finally:
        every = [i for group in running.values() for i in group]
        for inst in every:
            if inst.proc.poll() is None:
                inst.proc.send_signal(signal.SIGTERM)
        for inst in every:
            try:
                inst.proc.wait(30)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait()


def text(inst: Instance) -> str:
    return inst.log.read_text(errors="replace")


async def test_actives_cut_off_from_the_broker_hand_over_and_stand_aside_until_it_is_back(
    tmp_path: Path, database_url: str, broker: Broker, mqtt_url: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=2)
    lift = f"{site_id}-lift"
    locks = {"rules": f"rules-{site_id}", "ingest": f"ingest-{site_id}"}
    env = os.environ | {"FACILITY_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    with links(tmp_path, broker) as through:
        async with instances(tmp_path, site.path, env, through) as running, \
                publisher(mqtt_url, "5") as client:
            old = {}
            for service in SERVICES:
                pid = await until_held(database_url, locks[service])
                old[service] = by_pid(running[service], pid)
                wait_log(old[service].proc, old[service].log, f"{service} subscribed", 60)
            pub = Publisher(client, site_id, lift)
            sending = asyncio.create_task(pub.run())
            try:
                await eventually(database_url, "SELECT 1 FROM latest_values", timeout_s=30)
                cut_at = time.monotonic()
                for service in SERVICES:
                    through[old[service].name].cut()
                new = {}
                for service in SERVICES:
                    pid = await until_held(database_url, locks[service],
                                           not_by=old[service].proc.pid)
                    took_over_s = time.monotonic() - cut_at
                    print(f"{service}: standby active {took_over_s:.1f} s after the cut")
                    # not before the grace (a node failover must not move the role); within
                    # it, the check, the term's wind-down and the standby's next try
                    assert GRACE_S <= took_over_s <= (
                        GRACE_S + TIMING.check_s + TIMING.wind_down_s + 2 * POLL_S), service
                    new[service] = by_pid(running[service], pid)
                    wait_log(new[service].proc, new[service].log, f"{service} subscribed", 60)
                # an entrapment that starts after the cut: the new active rules raise it
                pub.points = dict(TRAPPED)
                await eventually(database_url, "SELECT 1 FROM work_orders", timeout_s=60)
                for service in SERVICES:
                    wait_log(old[service].proc, old[service].log,
                             "still no MQTT broker reachable", 30)
                # the lock free, the cut-off instances still do not take it: for two of
                # their probes, nobody holds it (a window: what is checked is an absence)
                for service in SERVICES:
                    new[service].proc.send_signal(signal.SIGKILL)
                    new[service].proc.wait()
                window_ends = time.monotonic() + 2 * PROBE_S + 2 * POLL_S
                while time.monotonic() < window_ends:
                    for service in SERVICES:
                        assert await holder(database_url, locks[service]) is None, service
                    await asyncio.sleep(0.1)
                for service in SERVICES:
                    through[old[service].name].restore()
                for service in SERVICES:
                    pid = await until_held(database_url, locks[service])
                    assert pid == old[service].proc.pid
                pub.points = dict(FREE)
                await eventually(database_url, "SELECT 1 FROM alarms WHERE NOT active",
                                 timeout_s=60)
            finally:
                await pub.stop(sending)
            acked = pub.acked
            await every_acknowledged_stored(database_url, lift, acked)
            counted = dict(await query(database_url,
                                       "SELECT kind, count(*) FROM events GROUP BY kind"))
            assert counted.get("alarm.raised") == 1, counted
            assert counted.get("work_order.created") == 1, counted
            for service in SERVICES:
                said = text(old[service])
                assert said.count(HANDOVER) == 1, said[-3000:]
                # no MQTT session opened while standing aside: the next connection is
                # after the broker answered again and the lock was taken
                after = said[said.index(HANDOVER):]
                assert after.index("answers again") < after.index(": active for") \
                    < after.index("MQTT connected"), after[-3000:]


async def test_an_active_that_never_reaches_a_broker_hands_over_and_stands_aside(
    tmp_path: Path, database_url: str, site_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Rules alone, its broker list a port nothing listens on: its term (stuck waiting for
    its publisher's first connection) ends after the grace, the lock is released, and the
    instance does not take it back, free as it is, while no node answers; it stops at
    SIGTERM's signal while standing aside."""
    caplog.set_level(logging.INFO, logger="facility.db.active_lock")
    site = make_site(tmp_path, site_id)
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    locks: list[ActiveLock] = []
    stopping = Stopping()
    task = asyncio.create_task(run_rules(
        site, database_url, nowhere, procedures_dir=PROCEDURES, stopping=stopping,
        standby=LockTiming(poll_s=POLL_S, check_s=POLL_S, broker_grace_s=1.0),
        on_lock=locks.append))
    try:
        async with asyncio.timeout(60):
            while "still no MQTT broker reachable" not in caplog.text:
                assert not task.done(), task
                await asyncio.sleep(0.05)
        [lock] = locks
        assert (lock.terms, lock.handovers, lock.active) == (1, 1, False)
        assert await holder(database_url, f"rules-{site_id}") is None
        assert caplog.text.count("no MQTT broker reachable for 1 s") == 1
    finally:
        stopping.set("the test is over")
        async with asyncio.timeout(30):
            await task


async def test_an_active_ingest_behind_a_silent_link_hands_over_after_its_keepalive(
    tmp_path: Path, database_url: str, broker: Broker, mqtt_url: str, site_id: str,
) -> None:
    """The active's link goes silent (SIGSTOP of its relay: no reset; a new connection is
    accepted by the kernel and never answered). Its session notices by keepalive (1 s: after
    1.5-2 s), the grace runs from there; the standby takes over. The silent link answers the
    TCP probe, so once it has stood aside the old active waits for the lock as a standby, and
    does not get it while the other holds it. Every acknowledged message is stored once."""
    site = make_site(tmp_path, site_id)
    lift = f"{site_id}-lift"
    lock = f"ingest-{site_id}"
    keepalive_s = 1
    env = os.environ | {"FACILITY_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT),
                        "FACILITY_MQTT_KEEPALIVE_S": str(keepalive_s),
                        "FACILITY_MQTT_CONNECT_TIMEOUT_S": "1"}
    with links(tmp_path, broker, ("ingest",)) as through:
        async with instances(tmp_path, site.path, env, through, ("ingest",)) as running, \
                publisher(mqtt_url, "5") as client:
            old = by_pid(running["ingest"], await until_held(database_url, lock))
            wait_log(old.proc, old.log, "ingest subscribed", 60)
            pub = Publisher(client, site_id, lift)
            sending = asyncio.create_task(pub.run())
            try:
                await eventually(database_url, "SELECT 1 FROM latest_values", timeout_s=30)
                frozen_at = time.monotonic()
                through[old.name].freeze()
                new = by_pid(running["ingest"],
                             await until_held(database_url, lock, not_by=old.proc.pid))
                took_over_s = time.monotonic() - frozen_at
                print(f"ingest: standby active {took_over_s:.1f} s after the link froze")
                assert GRACE_S + 1.5 * keepalive_s <= took_over_s <= (
                    2 * keepalive_s + GRACE_S + TIMING.check_s + TIMING.wind_down_s
                    + 2 * POLL_S)
                wait_log(new.proc, new.log, "ingest subscribed", 60)

                def waiting_again() -> bool:
                    said = text(old)
                    return "another instance is active" in said[said.index(HANDOVER):]

                poll(waiting_again, 30, "the old active standing by", interval_s=0.1)
                assert await holder(database_url, lock) == new.proc.pid
            finally:
                await pub.stop(sending)
            acked = pub.acked
            await every_acknowledged_stored(database_url, lift, acked)
            assert text(old).count(HANDOVER) == 1


async def test_a_broker_blip_shorter_than_the_grace_keeps_the_active(
    tmp_path: Path, database_url: str, broker: Broker, site_id: str,
) -> None:
    """As a broker node's failover: the active's link is cut and back at once (a new relay);
    its session reconnects within the grace (10 s here), so it stays active, says nothing of
    handing over, and the standby keeps standing by."""
    site = make_site(tmp_path, site_id)
    lock = f"ingest-{site_id}"
    env = os.environ | {"FACILITY_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    with links(tmp_path, broker, ("ingest",)) as through:
        async with instances(tmp_path, site.path, env, through, ("ingest",),
                             grace_s=10.0) as running:
            active = by_pid(running["ingest"], await until_held(database_url, lock))
            wait_log(active.proc, active.log, "ingest subscribed", 60)
            through[active.name].cut()
            wait_log(active.proc, active.log, "connection refused", 30)
            through[active.name].restore()
            wait_log(active.proc, active.log, " back after ", 30)
            assert await holder(database_url, lock) == active.proc.pid
            assert "no MQTT broker reachable" not in text(active)
            [standby] = [i for i in running["ingest"] if i is not active]
            assert ": active for" not in text(standby)
