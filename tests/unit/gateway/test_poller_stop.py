"""A device poller ends at the gateway's stop signal even when its reader swallowed the
cancellation (issue 17: one poller kept polling after SIGINT and the gateway never
finished its shutdown). Fakes of pure logic, no I/O beyond loading the demo site."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

import pytest

from facility.messages import utcnow
from facility.site import Device, load_site
from facility.stopping import Stopping
from gateway.counters import GatewayCounters
from gateway.health import Transition
from gateway.poller import DevicePoller
from gateway.reading import Reading

ROOT = Path(__file__).resolve().parents[3]


class SwallowingReader:
    """Answers every read; a cancellation that arrives meanwhile is swallowed, as
    pymodbus' wait_for does on Python 3.11 when the response lands in the same turn."""

    device_id = "fake"

    def __init__(self) -> None:
        self.reads = 0
        self.swallowed = 0
        self.closed = False
        self.reading = asyncio.Event()

    async def read(self, classes: Collection[str] | None = None) -> Reading:
        self.reads += 1
        self.reading.set()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.swallowed += 1
        finally:
            self.reading.clear()
        return Reading(ts=utcnow(), values={})

    async def close(self) -> None:
        self.closed = True


class NullSink:
    def snapshot_due(self, device: Device, now: float) -> bool:
        return False

    async def publish_reading(self, device: Device, reading: Reading, now: float) -> None:
        return None

    async def publish_device_status(self, device: Device, change: Transition) -> None:
        return None


@pytest.fixture
def device() -> Device:
    site = load_site(ROOT / "sites" / "demo.yaml")
    return next(d for d in site.devices.values() if d.config.address.protocol == "modbus")


def _poller(device: Device, reader: SwallowingReader, stopping: Stopping) -> DevicePoller:
    return DevicePoller(device, reader, NullSink(), GatewayCounters(), offline_after=3,
                        stopping=stopping)


async def test_a_poller_whose_cancellation_was_swallowed_ends_at_the_stop_signal(
    device: Device,
) -> None:
    stopping = Stopping()
    reader = SwallowingReader()

    async def gateway() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(stopping.watch_cancel())
            tg.create_task(_poller(device, reader, stopping).run())

    task = asyncio.create_task(gateway())
    await reader.reading.wait()
    task.cancel()  # while the read is in hand: the reader swallows it
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert reader.swallowed == 1 and reader.closed


async def test_at_the_stop_signal_the_poll_in_hand_finishes_and_no_new_one_starts(
    device: Device,
) -> None:
    stopping = Stopping()
    reader = SwallowingReader()
    task = asyncio.create_task(_poller(device, reader, stopping).run())
    await reader.reading.wait()
    stopping.set()
    async with asyncio.timeout(5):
        await task  # ends by itself, not cancelled
    assert reader.reads == 1 and reader.swallowed == 0 and reader.closed
