"""Polls one device on a fixed-rate schedule and hands the outcome to the publisher.

Ticks fall at ``start + offset + k * interval`` on ``loop.time()``; at each tick the
device's ``Schedule`` says which poll classes are due and only their points are read. A
poll that runs past its next tick makes that tick (and any others it covered) be skipped
and counted as overruns, never queued, so memory stays flat and the schedule does not
drift. The loop ends at the gateway's stop signal (``facility.stopping.Stopping``) as well
as on cancellation: a poll in hand finishes (each request is bounded), no new one starts,
so a library that swallowed the task's ``CancelledError`` cannot keep it polling. Each
device has its own task and its own connection with one request in flight: a
slow or dead device delays nobody else. Failures are classified by ``DeviceError.kind``
and counted; ``DeviceHealth`` decides when the device is offline or back, and the change
is published and logged once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from facility.site import Device
from facility.stopping import Stopping
from gateway.counters import GatewayCounters
from gateway.errors import DeviceError
from gateway.health import DeviceHealth, Transition
from gateway.reading import DeviceReader, Reading
from gateway.schedule import Schedule

log = logging.getLogger(__name__)
DEFAULT_EVERY: Mapping[str, int] = {"fast": 1, "normal": 5, "slow": 60}


class Sink(Protocol):
    def snapshot_due(self, device: Device, now: float) -> bool: ...

    async def publish_reading(self, device: Device, reading: Reading, now: float) -> None: ...

    async def publish_device_status(self, device: Device, change: Transition) -> None: ...


class DevicePoller:
    def __init__(
        self, device: Device, reader: DeviceReader, sink: Sink, counters: GatewayCounters,
        *, offline_after: int, offset_s: float = 0.0, every: Mapping[str, int] = DEFAULT_EVERY,
        phase: int = 0, stopping: Stopping | None = None,
    ) -> None:
        self.device = device
        self._reader = reader
        self._sink = sink
        self._counters = counters
        self._stats = counters.device(device.id)
        self._health = DeviceHealth(offline_after)
        self._interval_s = device.config.poll_interval_s
        self._offset_s = offset_s
        self._stopping = stopping if stopping is not None else Stopping()
        self._schedule = Schedule.of((p.poll_class for p in device.profile.points), every, phase)

    async def run(self) -> None:
        """Poll until the stop signal or cancellation."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._offset_s
        tick = 0
        try:
            while not await self._stopping.sleep(next_tick - loop.time()):
                due = self._schedule.due(
                    tick, snapshot=self._sink.snapshot_due(self.device, loop.time()))
                if due:
                    try:
                        await self.poll_once(due)
                    except Exception:  # the per-device edge: log and go on polling
                        log.exception("%s: publishing a poll's outcome failed", self.device.id)
                next_tick += self._interval_s
                tick += 1
                now = loop.time()
                if now > next_tick:
                    missed = int((now - next_tick) // self._interval_s) + 1
                    self._counters.overruns += missed
                    self._stats.overruns += missed
                    next_tick += missed * self._interval_s
                    tick += missed
                    log.debug("%s: poll overran, %d tick(s) skipped", self.device.id, missed)
        finally:
            await self._reader.close()

    async def poll_once(self, classes: frozenset[str] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._counters.polls += 1
        self._stats.polls += 1
        started = loop.time()
        try:
            reading = await self._reader.read(classes)
        except DeviceError as exc:
            self._finished(started)
            self._counters.failures[exc.kind] += 1
            self._stats.failures += 1
            log.debug("%s: poll failed: %s", self.device.id, exc.reason)
            await self._changed(self._health.record_failure(exc.kind, loop.time()))
            return
        except Exception:  # the per-device edge: log, count, go on polling
            self._finished(started)
            self._counters.failures["internal"] += 1
            self._stats.failures += 1
            log.exception("%s: poll failed unexpectedly", self.device.id)
            await self._changed(self._health.record_failure("internal error", loop.time()))
            return
        self._finished(started)
        self._stats.requests = reading.requests
        self._counters.requests += reading.requests
        self._counters.bad_points += len(reading.bad)
        await self._changed(self._health.record_success(loop.time()))
        await self._sink.publish_reading(self.device, reading, loop.time())

    def _finished(self, started: float) -> None:
        elapsed = asyncio.get_running_loop().time() - started
        self._stats.last_poll_s = elapsed
        self._counters.poll_seconds += elapsed

    async def _changed(self, change: Transition | None) -> None:
        if change is None:
            return
        if change.state == "offline":
            log.warning("device %s unreachable: %s", self.device.id, change.reason)
        elif change.since_s is None:
            log.info("device %s online", self.device.id)
        else:
            log.info("device %s %s", self.device.id, change.reason)
        await self._sink.publish_device_status(self.device, change)
