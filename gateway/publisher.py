"""Publishes the gateway's messages per MQTT contract v1 over ``facility.mqtt.MqttClient``.

One ``Publisher`` per gateway session: it owns the session id and the ``seq`` counter
(increasing across every device of the gateway), the per-device report state and whether
a device's birth went out. Everything is QoS 1; status and birth messages are retained.
No more than ``max_inflight`` messages await their PUBACK: a caller past that waits, so a
slow broker slows the pollers (whose skipped ticks are counted) instead of growing memory."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from facility import topics
from facility.messages import (
    Birth,
    DeviceStatus,
    GatewayStatus,
    PointMeta,
    Telemetry,
    encode,
    utcnow,
)
from facility.mqtt import MqttClient, MqttError
from facility.profiles import DataType, ModbusPoint
from facility.site import Device
from gateway.counters import GatewayCounters
from gateway.health import Transition
from gateway.reading import Reading
from gateway.reporting import Report, ReportState

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self, mqtt: MqttClient, site_id: str, gateway_id: str, session: str,
        counters: GatewayCounters, *, report_period_s: float, max_inflight: int = 500,
    ) -> None:
        self._mqtt = mqtt
        self._site = site_id
        self._gateway = gateway_id
        self.session = session
        self._counters = counters
        self._period_s = report_period_s
        self._max_inflight = max_inflight
        self._inflight: set[asyncio.Future[None]] = set()
        self._seq = 0
        self._reports: dict[str, ReportState] = {}
        self._born: set[str] = set()

    async def publish_gateway_status(self, state: Literal["online", "offline"]) -> None:
        topic, payload = gateway_status(self._site, self._gateway, self.session, state)
        await self._send(topic, payload, retain=True)

    async def publish_device_status(self, device: Device, change: Transition) -> None:
        msg = DeviceStatus(ts=utcnow(), state=change.state, reason=change.reason)
        await self._send(self._topic(topics.TopicKind.DEVICE_STATUS, device), encode(msg),
                         retain=True)

    async def publish_reading(self, device: Device, reading: Reading, now: float) -> None:
        """Birth after the first good poll of the session, then telemetry as reported."""
        if device.id not in self._born:
            await self._send(self._topic(topics.TopicKind.BIRTH, device),
                             encode(birth_of(device, reading, self.session)), retain=True)
            self._born.add(device.id)
        state = self._reports.get(device.id)
        if state is None:
            deadbands = {p.name: p.deadband for p in device.profile.points}
            state = self._reports[device.id] = ReportState(deadbands, self._period_s)
        report = state.decide(reading.values, reading.bad, now)
        if report is not None:
            await self._send(self._topic(topics.TopicKind.TELEMETRY, device),
                             encode(self._telemetry(reading, report)))

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for every message in flight to be acknowledged."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout_s)

    def _telemetry(self, reading: Reading, report: Report) -> Telemetry:
        self._seq += 1
        return Telemetry(ts=reading.ts, seq=self._seq, session=self.session,
                         points=report.points, quality=report.quality)

    def _topic(self, kind: topics.TopicKind, device: Device) -> str:
        return topics.device_topic(kind, self._site, self._gateway, device.id)

    async def _send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        while len(self._inflight) >= self._max_inflight:
            self._counters.publish_waits += 1
            await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
        fut = self._mqtt.publish_nowait(topic, payload, qos=1, retain=retain)
        self._inflight.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[None]) -> None:
        self._inflight.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._counters.published += 1
        else:
            self._counters.publish_failures += 1
            log.warning("publish failed: %s", exc if isinstance(exc, MqttError) else repr(exc))


def gateway_status(
    site_id: str, gateway_id: str, session: str, state: Literal["online", "offline"]
) -> tuple[str, bytes]:
    """Topic and payload of a session's gateway status (the will uses it too)."""
    msg = GatewayStatus(ts=utcnow(), state=state, session=session)
    return topics.gateway_status(site_id, gateway_id), encode(msg)


def value_type(point: object) -> str:
    """The JSON type of a point's values: bool, int, float or string."""
    if isinstance(point, ModbusPoint):
        if point.type is DataType.BOOL:
            return "bool"
        if point.type is DataType.STRING:
            return "string"
        if point.type in (DataType.FLOAT32, DataType.FLOAT64):
            return "float"
        return "int" if point.scale == 1.0 and point.offset == 0.0 else "float"
    return str(getattr(point, "type", "float"))


def birth_of(device: Device, reading: Reading, session: str) -> Birth:
    meta = {
        p.name: PointMeta(type=value_type(p), unit=p.unit, tags=p.tags, enum=p.enum)
        for p in device.profile.points
    }
    return Birth(
        ts=reading.ts, session=session, device_type=device.type,
        profile=device.profile.profile, profile_version=device.profile.version,
        building=device.building, points=meta, values=dict(reading.values),
    )
