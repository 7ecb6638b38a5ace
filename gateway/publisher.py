"""Publishes one gateway's messages per MQTT contract v1 through the store-and-forward
``Forwarder``: it owns the session id and the ``seq`` counter (increasing across every
device of the gateway), the per-device report state and whether a device's birth went
out. Everything is QoS 1; status and birth messages are retained. Device status, birth and
telemetry carrying an alarm or state change are *critical* (never dropped from the on-disk
queue); other telemetry is bulk. Gateway status goes straight to the broker, never queued:
``online`` is said again at every (re)connect and the will says ``offline``. A device's first
complete poll on a new connection (the forwarder's ``epoch``) is sent as a full snapshot, so
the consumers' live view of it is whole again at once, whatever the queue still replays."""

from __future__ import annotations

import contextlib
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
from gateway.buffer import Outgoing
from gateway.forwarder import Forwarder
from gateway.health import Transition
from gateway.reading import Reading
from gateway.reporting import Report, ReportState

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self, mqtt: MqttClient, forwarder: Forwarder, site_id: str, gateway_id: str,
        session: str, *, report_period_s: float,
    ) -> None:
        self._mqtt = mqtt
        self._forwarder = forwarder
        self._site = site_id
        self._gateway = gateway_id
        self.session = session
        self._period_s = report_period_s
        self._seq = 0
        self._reports: dict[str, ReportState] = {}
        self._epochs: dict[str, int] = {}  # the forwarder's connection a device last reported on
        self._born: set[str] = set()

    async def publish_gateway_status(self, state: Literal["online", "offline"],
                                     timeout_s: float | None = None) -> None:
        """Straight to the broker when connected (never queued: stale by replay time)."""
        if not self._mqtt.connected.is_set():
            return
        topic, payload = gateway_status(self._site, self._gateway, self.session, state)
        with contextlib.suppress(MqttError, TimeoutError):
            await self._mqtt.publish(topic, payload, retain=True, timeout_s=timeout_s)

    async def publish_device_status(self, device: Device, change: Transition) -> None:
        msg = DeviceStatus(ts=utcnow(), state=change.state, reason=change.reason)
        await self._forwarder.send(Outgoing(
            self._topic(topics.TopicKind.DEVICE_STATUS, device), encode(msg), retain=True,
            critical=True))

    def snapshot_due(self, device: Device, now: float) -> bool:
        """Whether the device's next complete poll goes out as a full snapshot."""
        return self._report_state(device).snapshot_due(now)

    async def publish_reading(self, device: Device, reading: Reading, now: float) -> None:
        """Birth after the first good poll of the session, then telemetry as reported."""
        if device.id not in self._born:
            await self._forwarder.send(Outgoing(
                self._topic(topics.TopicKind.BIRTH, device),
                encode(birth_of(device, reading, self.session)), retain=True, critical=True))
            self._born.add(device.id)
        report = self._report_state(device).decide(reading.values, reading.bad, now,
                                                   complete=reading.complete)
        if report is not None:
            await self._forwarder.send(Outgoing(
                self._topic(topics.TopicKind.TELEMETRY, device),
                encode(self._telemetry(reading, report)), telemetry=True,
                critical=report.urgent))

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the session's latest telemetry message (0: none yet)."""
        return self._seq

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for every live message in flight to be acknowledged."""
        await self._forwarder.drain(timeout_s)

    def _report_state(self, device: Device) -> ReportState:
        state = self._reports.get(device.id)
        if state is None:
            state = self._reports[device.id] = ReportState.for_points(
                device.profile.points, self._period_s)
        epoch = self._forwarder.epoch
        if self._epochs.get(device.id) != epoch:
            self._epochs[device.id] = epoch
            state.force_snapshot()
        return state

    def _telemetry(self, reading: Reading, report: Report) -> Telemetry:
        self._seq += 1
        flags = {n: f for n, f in reading.flags.items() if n in report.quality}
        return Telemetry(ts=reading.ts, seq=self._seq, session=self.session,
                         points=report.points, quality=report.quality, flags=flags or None)

    def _topic(self, kind: topics.TopicKind, device: Device) -> str:
        return topics.device_topic(kind, self._site, self._gateway, device.id)


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
