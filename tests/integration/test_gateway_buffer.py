"""Store-and-forward against a real, private mosquitto that the test stops and starts again
on the same port, and a real Modbus device served by the simulators' server: nothing the
gateway read while the broker was away is lost, replayed messages are flagged historical
with their original ts, seq and session, and a gateway killed with a backlog on disk
replays it after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from facility.messages import Telemetry
from facility.mqtt import MqttClient
from facility.ports import free_port
from facility.site import Site
from facility.topics import TopicKind
from gateway.buffer import MessageStore
from gateway.counters import GatewayCounters
from gateway.service import buffer_path, run_gateway
from simulators.modbus_server import ModbusDeviceServer
from stack.embedded.broker import Broker
from stack.embedded.lifetime import die_with_parent
from tests.integration.gateway_support import ROOT, Inbox, until, write_site

pytestmark = pytest.mark.slow
ELEVATOR = {
    "moving": False, "door_closed": True, "door_zone": True, "alarm_button": False,
    "car_floor": 1, "direction": 0, "passengers": 0, "load_kg": 0, "service_mode": 0,
    "fault_code": 0, "speed_mps": 0.0, "run_count": 1,
}


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", free_port(), prefer="mosquitto")
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def subscriber(private_broker: Broker, site_id: str) -> AsyncIterator[Inbox]:
    """A persistent session: what the broker takes while we reconnect is kept for us."""
    # back within a second of the broker, as the gateway is (paho's default backoff reaches
    # 30 s: the test would end before this subscriber saw the replay)
    client = MqttClient(private_broker.url, f"sub-{site_id}", persistent=True, protocol="5",
                        reconnect_max_s=1)
    await client.start()
    await client.wait_connected(5)
    await client.subscribe(f"facility/v1/{site_id}/+/+/telemetry")
    await client.wait_subscribed(5)
    box = Inbox(client, site_id)
    task = asyncio.create_task(box.collect())
    yield box
    task.cancel()
    await client.close()


def elevator_site(tmp_path: Path, site_id: str, port: int) -> Site:
    return write_site(tmp_path, site_id, (
        f"      - {{id: lift, type: elevator, profile: elevator, poll_interval_s: 0.1,"
        f" timeout_s: 0.5, address: {{protocol: modbus, port: {port}}}}}\n"
    ), report_period_s=0.3)


async def keep_changing(server: ModbusDeviceServer) -> None:
    """Change a fast point every 50 ms so that telemetry flows on change as well."""
    floor = 0
    while True:
        floor = (floor + 1) % 20
        await server.publish({**ELEVATOR, "car_floor": floor})
        await asyncio.sleep(0.05)


def telemetry(inbox: Inbox) -> list[Telemetry]:
    return inbox.all_of(Telemetry, TopicKind.TELEMETRY, "lift")


def assert_contiguous(received: list[Telemetry], session: str) -> dict[int, Telemetry]:
    """Every seq of the session from 1 to the highest, and duplicates identical."""
    by_seq: dict[int, Telemetry] = {}
    for t in received:
        if t.session != session:
            continue
        first = by_seq.setdefault(t.seq, t)
        assert (first.ts, first.points) == (t.ts, t.points), f"seq {t.seq} differs"
    assert by_seq, "nothing received"
    missing = set(range(1, max(by_seq) + 1)) - set(by_seq)
    assert not missing, f"lost seqs {sorted(missing)[:20]}"
    return by_seq


def holds(check: Callable[[], object]) -> bool:
    """Whether the assertions of ``check`` hold right now (for ``until``; the caller runs
    ``check`` once more after waiting, so that a failure says what is wrong)."""
    try:
        check()
    except AssertionError:
        return False
    return True


def newest_live(received: list[Telemetry], session: str) -> None:
    by_seq = assert_contiguous(received, session)
    assert not by_seq[max(by_seq)].historical, "the newest message is still a replayed one"


async def test_broker_outage_loses_nothing_and_replays_in_order(
    tmp_path: Path, private_broker: Broker, subscriber: Inbox, site_id: str,
) -> None:
    port = free_port()
    site = elevator_site(tmp_path, site_id, port)
    counters = GatewayCounters()
    ready = asyncio.Event()
    async with ModbusDeviceServer(site.devices["lift"], ELEVATOR) as server:
        changer = asyncio.create_task(keep_changing(server))
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", private_broker.url, ready=ready, counters=counters,
            state_dir=tmp_path / "state"))
        try:
            await until(lambda: len(telemetry(subscriber)) >= 10)
            session = telemetry(subscriber)[0].session
            await asyncio.to_thread(private_broker.stop)
            await until(lambda: counters.queued >= 40)  # polls go on into the queue
            await asyncio.to_thread(private_broker.start)
            await until(lambda: counters.replayed >= counters.queued > 0, 30)
            outage_done = counters.queued
            await until(lambda: counters.published > counters.replayed + 20)  # live again
        finally:
            changer.cancel()
            gateway.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gateway

    store = MessageStore(buffer_path(site, site.gateway("gw-t"), tmp_path / "state"), 1000)
    assert store.count == 0  # everything was acknowledged by the broker
    store.close()
    assert counters.dropped == 0 and counters.replayed >= outage_done
    # the persistent session delivers what the broker took: until nothing is missing and the
    # newest is live (messages still in flight arrive out of order meanwhile)
    with contextlib.suppress(TimeoutError):
        await until(lambda: holds(lambda: newest_live(telemetry(subscriber), session)), 20)
    by_seq = assert_contiguous(telemetry(subscriber), session)
    historical = [t for t in by_seq.values() if t.historical]
    assert len(historical) >= 30
    # replayed in order, with the original timestamps: ts grows with seq
    ordered = [by_seq[s] for s in sorted(by_seq)]
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(ordered))
    # after the replay the gateway is live again: the newest messages are not historical
    assert not ordered[-1].historical


def gateway_process(site: Site, mqtt_url: str, state_dir: Path, log: Path
                    ) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "gateway", "--site", str(site.path),
             "--gateway", "gw-t", "--mqtt-url", mqtt_url, "--state-dir", str(state_dir),
             "--log-level", "INFO"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "FACILITY_SITE": str(site.path)},
            start_new_session=True, preexec_fn=die_with_parent,
        )


def stored_seqs(path: Path) -> dict[str, list[int]]:
    import json

    store = MessageStore(path, 1_000_000)
    try:
        out: dict[str, list[int]] = {}
        for row in store.oldest(1_000_000):
            if row.message.telemetry:
                data = json.loads(row.message.payload)
                out.setdefault(data["session"], []).append(data["seq"])
        return out
    finally:
        store.close()


async def test_gateway_killed_with_a_backlog_replays_it_after_restart(
    tmp_path: Path, private_broker: Broker, subscriber: Inbox, site_id: str,
) -> None:
    port = free_port()
    site = elevator_site(tmp_path, site_id, port)
    state = tmp_path / "state"
    queue = buffer_path(site, site.gateway("gw-t"), state)
    log = tmp_path / "gateway.log"
    procs: list[subprocess.Popen[bytes]] = []
    async with ModbusDeviceServer(site.devices["lift"], ELEVATOR) as server:
        changer = asyncio.create_task(keep_changing(server))
        try:
            procs.append(gateway_process(site, private_broker.url, state, log))
            await until(lambda: len(telemetry(subscriber)) >= 5, 30)
            first_session = telemetry(subscriber)[0].session
            await asyncio.to_thread(private_broker.stop)
            await until(lambda: queue.exists() and
                        len(stored_seqs(queue).get(first_session, [])) >= 20, 30)
            procs[0].send_signal(signal.SIGKILL)  # no goodbye: only the disk remains
            procs[0].wait(10)
            backlog = stored_seqs(queue)[first_session]
            assert backlog == sorted(backlog)

            procs.append(gateway_process(site, private_broker.url, state, log))
            # the restarted gateway polls into the same queue, under a session of its own
            await until(lambda: len(stored_seqs(queue)) >= 2, 30)
            await asyncio.to_thread(private_broker.start)
            await until(lambda: {t.seq for t in telemetry(subscriber)
                                 if t.session == first_session} >= set(backlog), 30)
            await until(lambda: any(t.session != first_session and not t.historical
                                    for t in telemetry(subscriber)), 30)
        finally:
            changer.cancel()
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(15)

    by_seq = assert_contiguous(telemetry(subscriber), first_session)
    assert max(by_seq) >= max(backlog)
    assert all(by_seq[s].historical for s in backlog)
    second = {t.session for t in telemetry(subscriber)} - {first_session}
    assert len(second) == 1  # the restarted gateway's own session, its backlog replayed too
    assert_contiguous(telemetry(subscriber), second.pop())
