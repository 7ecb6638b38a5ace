"""From an MQTT message to the pure engine's input, with no I/O: ``MessageReader`` parses the
topic (cached: a site's topics are a fixed set) and the payload, keeps each device's current
values and each gateway's session, and drops live telemetry that is not after what its
device already reported (same session, seq not above the last: a duplicate or out of order,
counted in ``stale``). Historical (replayed) telemetry comes back as ``Replayed``, for the
record only. A bad message raises ``MessageError`` or ``TopicError`` with the reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pydantic

from facility import topics
from facility.messages import (
    MAX_PAYLOAD_BYTES,
    DeviceStatus,
    GatewayStatus,
    MessageError,
    Telemetry,
    parse,
)
from facility.site import Site
from facility.topics import Topic, TopicError, TopicKind
from rules.current import CurrentValues, GatewaySessions, SequenceGuard
from rules.engine_types import DeviceStatusInput, GatewayStatusInput, Input, TelemetryInput

log = logging.getLogger(__name__)
TOPIC_CACHE = 100_000  # parsed topics remembered (a site's topics are a fixed set)


@dataclass(frozen=True, slots=True)
class Replayed:
    """A historical (replayed) telemetry message: evaluated for the record only."""

    device: str
    msg: Telemetry


class MessageReader:
    """One site's messages to engine inputs; ``dirty`` devices get every rule evaluated on
    their next message (their last step failed)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.values = CurrentValues()
        self._sessions = GatewaySessions()
        self._order = SequenceGuard()
        self._topics: dict[str, Topic] = {}
        self.dirty: set[str] = set()
        self.stale = 0

    def topic(self, name: str) -> Topic:
        """A parsed topic of this site (cached: parsing is a tenth of the work per message)."""
        topic = self._topics.get(name)
        if topic is None:
            topic = topics.parse(name)
            if topic.site != self.site.id:
                raise TopicError(name, f"site {topic.site} is not {self.site.id}")
            if len(self._topics) < TOPIC_CACHE:
                self._topics[name] = topic
        return topic

    def read(self, name: str, payload: bytes) -> Input | Replayed | None:
        """The engine input of a message; MessageError / TopicError for a bad one."""
        topic = self.topic(name)
        if topic.kind is TopicKind.GATEWAY_STATUS:
            assert topic.gateway is not None
            gs = parse(GatewayStatus, payload)
            if not self._sessions.accept(topic.gateway, gs):
                log.info("ignored stale death of gateway %s (session %s)", topic.gateway,
                         gs.session)
                return None
            return GatewayStatusInput(topic.gateway, gs.state == "online")
        device = self.site.devices.get(topic.device or "")
        if device is None or device.gateway != topic.gateway:
            raise MessageError(f"device {topic.device} is not a device of gateway "
                               f"{topic.gateway} at site {self.site.id}")
        if topic.kind is TopicKind.DEVICE_STATUS:
            ds = parse(DeviceStatus, payload)
            if ds.state == "offline":
                self.values.forget(device.id)
            return DeviceStatusInput(device.id, ds.state == "online")
        if topic.kind is TopicKind.TELEMETRY:
            return self._telemetry_input(device.id, telemetry(payload))
        return None  # births carry nothing the rules need yet

    def _telemetry_input(self, device: str, tm: Telemetry) -> Input | Replayed | None:
        if tm.historical:
            return Replayed(device, tm)
        last = self._order.check(device, tm)
        if last is not None:
            self.stale += 1
            log.info("ignored telemetry of %s: seq %d of session %s is not after %d "
                     "(duplicate or out of order)", device, tm.seq, tm.session, last)
            return None
        values, changed = self.values.merge(device, tm)
        bad = self.values.bad(device)
        if device in self.dirty:
            self.dirty.discard(device)
            return TelemetryInput(device, values, bad=bad)
        return TelemetryInput(device, values, changed=changed, bad=bad)


def telemetry(payload: bytes) -> Telemetry:
    """Parse telemetry with pydantic's JSON parser (half the cost of ``parse``, on every
    message); anything it refuses goes through ``parse``, which says why."""
    if len(payload) <= MAX_PAYLOAD_BYTES:
        try:
            return Telemetry.model_validate_json(payload)
        except pydantic.ValidationError:
            pass
    return parse(Telemetry, payload)
