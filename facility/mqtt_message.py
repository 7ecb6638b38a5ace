"""A message ``facility.mqtt.MqttClient`` received, and its acknowledgement (manual-ack
clients: ingest acknowledges after its batch is committed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Acknowledger(Protocol):
    def ack(self, mid: int, qos: int) -> None: ...


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    _client: Acknowledger | None = field(default=None, repr=False)

    def ack(self) -> None:
        """Acknowledge a QoS 1 message (manual-ack clients only; a no-op otherwise)."""
        if self._client is not None and self.qos > 0:
            self._client.ack(self.mid, self.qos)
