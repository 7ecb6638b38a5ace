"""Live first, against a real mosquitto that the test stops and starts and a real Modbus
device: once the broker is back, live readings go out at once (the first one of each device a
full snapshot) while the backlog replays beside them at a bounded rate, and a fault that
begins during the replay is published live; nothing is lost. The disk queue is bounded by
bytes as well as rows (bulk dropped first, critical kept, counted) and replays critical rows
first; a full disk (a tiny tmpfs this test mounts) loses nothing the gateway held and stops
neither polling nor publishing. (A read-only remount is refused while the queue file is open
for writing, so it is not staged here; a read-only file system raises the same sqlite3.Error
the forwarder handles.)"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from facility.messages import Telemetry
from facility.mqtt import MqttClient, MqttError
from facility.ports import free_port
from facility.site import Site
from gateway.buffer import MessageStore, Outgoing
from gateway.counters import GatewayCounters
from gateway.service import run_gateway
from simulators.modbus_server import ModbusDeviceServer
from stack.embedded.broker import Broker
from tests.integration.gateway_support import Inbox, until, write_site
from tests.integration.test_gateway_buffer import (  # noqa: F401 - fixtures
    ELEVATOR,
    assert_contiguous,
    holds,
    keep_changing,
    private_broker,
    subscriber,
    telemetry,
)

pytestmark = pytest.mark.slow


def lift_site(tmp_path: Path, site_id: str, port: int, buffer: str) -> Site:
    return write_site(tmp_path, site_id, (
        f"      - {{id: lift, type: elevator, profile: elevator, poll_interval_s: 0.1,"
        f" timeout_s: 0.5, address: {{protocol: modbus, port: {port}}}}}\n"
    ), report_period_s=60, gateway_options=f", buffer: {{{buffer}}}")


async def changing(server: ModbusDeviceServer, values: dict) -> None:
    floor = 0
    while True:
        floor = (floor + 1) % 20
        await server.publish({**values, "car_floor": floor})
        await asyncio.sleep(0.05)


async def test_live_goes_first_after_an_outage_and_a_fault_during_the_replay_is_live(
    tmp_path: Path, private_broker: Broker, subscriber: Inbox, site_id: str,  # noqa: F811
) -> None:
    port = free_port()
    site = lift_site(tmp_path, site_id, port, "replay_rate_per_s: 5")
    counters = GatewayCounters()
    values = dict(ELEVATOR)
    async with ModbusDeviceServer(site.devices["lift"], ELEVATOR) as server:
        changer = asyncio.create_task(changing(server, values))
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", private_broker.url, counters=counters, state_dir=tmp_path / "state"))
        try:
            await until(lambda: len(telemetry(subscriber)) >= 5)
            session = telemetry(subscriber)[0].session
            await asyncio.to_thread(private_broker.stop)
            await until(lambda: counters.queued >= 60, 30)
            await asyncio.to_thread(private_broker.start)
            before = len(subscriber.received)

            def live_after() -> list[Telemetry]:
                return [t for t in telemetry_since(subscriber, before) if not t.historical]

            # live at once, with the device's whole state, while the queue still drains
            await until(lambda: any("door_zone" in t.points for t in live_after()), 10)
            assert counters.replayed < counters.queued
            # a fault begins during the replay: published live, not behind the backlog
            changer.cancel()
            values["alarm_button"] = True
            values["door_zone"] = False
            changer = asyncio.create_task(changing(server, values))
            await until(lambda: any(t.points.get("alarm_button") for t in live_after()), 10)
            assert counters.replayed < counters.queued, "the backlog was already replayed"
            await until(lambda: counters.replayed >= counters.queued, 60)
            # the last replayed and live messages in flight: until none is missing
            with contextlib.suppress(TimeoutError):
                await until(lambda: holds(
                    lambda: assert_contiguous(telemetry(subscriber), session)), 20)
        finally:
            changer.cancel()
            gateway.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gateway
    by_seq = assert_contiguous(telemetry(subscriber), session)  # nothing lost
    replayed = [t for t in by_seq.values() if t.historical]
    assert len(replayed) >= 60 and counters.dropped == 0


def telemetry_since(inbox: Inbox, start: int) -> list[Telemetry]:
    from facility import messages, topics

    out = []
    for topic, payload, _r in inbox.received[start:]:
        t = topics.parse(topic)
        if t.kind is topics.TopicKind.TELEMETRY and t.device == "lift":
            out.append(messages.parse(Telemetry, payload))
    return out


def test_the_queue_is_bounded_by_bytes_keeping_critical_rows_and_replays_them_first(
    tmp_path: Path,
) -> None:
    store = MessageStore(tmp_path / "q.sqlite", max_messages=1_000_000, max_bytes=64 * 1024)
    bulk = [Outgoing("t/bulk", bytes([i % 256]) * 1000, telemetry=True) for i in range(100)]
    alarm = Outgoing("t/alarm", b"x" * 1000, telemetry=True, critical=True)
    dropped = store.append([*bulk[:50], alarm, *bulk[50:]])
    assert store.bytes <= 64 * 1024 and dropped == 101 - store.count
    kept = store.oldest(1000)
    assert any(r.message.critical for r in kept)  # never the critical row
    bulk_kept = [r.message.payload for r in kept if not r.message.critical]
    assert bulk_kept == [m.payload for m in bulk[-len(bulk_kept):]]  # oldest bulk went first
    first = store.next_batch(3)
    assert first[0].message == alarm and not first[1].message.critical
    store.delete(first)
    assert store.count == len(kept) - 3
    store.close()
    reopened = MessageStore(tmp_path / "q.sqlite", 1_000_000, 64 * 1024)
    assert (reopened.count, reopened.critical) == (len(kept) - 3, 0)
    reopened.close()


def fill(path: Path) -> None:
    """Write until the file system is full."""
    with contextlib.suppress(OSError), open(path, "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 320 KB tmpfs mounted for this test (root only), unmounted after."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_loses_nothing_held_and_polling_and_live_publishing_go_on(
    tmp_path: Path, private_broker: Broker, subscriber: Inbox,  # noqa: F811
    site_id: str, tiny_disk: Path,
) -> None:
    port = free_port()
    site = lift_site(tmp_path, site_id, port, f"path: {tiny_disk / 'q.sqlite'}")
    counters = GatewayCounters()
    async with ModbusDeviceServer(site.devices["lift"], ELEVATOR) as server:
        changer = asyncio.create_task(keep_changing(server))
        gateway = asyncio.create_task(run_gateway(
            site, "gw-t", private_broker.url, counters=counters, state_dir=tmp_path / "state"))
        filler = tiny_disk / "filler"
        try:
            await until(lambda: len(telemetry(subscriber)) >= 5)
            session = telemetry(subscriber)[0].session
            await asyncio.to_thread(fill, filler)
            await asyncio.to_thread(private_broker.stop)
            await until(lambda: counters.unstored >= 30, 30)
            polls = counters.polls
            await until(lambda: counters.polls > polls + 10)  # polling goes on
            assert not gateway.done()
            await asyncio.to_thread(private_broker.start)
            held = counters.unstored
            await until(lambda: counters.replayed >= held, 30)  # replayed from memory
            live = len(telemetry(subscriber))
            await until(lambda: len(telemetry(subscriber)) > live + 10)  # and live again
            filler.unlink()  # space again: the queue file takes writes
            assert not gateway.done()
        finally:
            changer.cancel()
            gateway.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gateway
    assert_contiguous(telemetry(subscriber), session)  # nothing lost
    assert counters.dropped == 0


async def test_pahos_outgoing_queue_is_bounded_while_the_broker_is_away() -> None:
    client = MqttClient(f"mqtt://127.0.0.1:{free_port()}", "bounded", max_queued=5)
    await client.start()  # nobody listens: never connected
    futs: list[asyncio.Future[None]] = []
    try:
        futs = [client.publish_nowait("t/x", b"m", qos=1) for _ in range(8)]
        refused = [f for f in futs if f.done() and isinstance(f.exception(), MqttError)]
        assert len(refused) == 3  # past the bound a publish fails (the gateway spools it)
        assert "queue" in str(refused[0].exception()).lower()
    finally:
        for f in futs:
            f.cancel()
        await client.close()
