"""Which node of a broker a client tries next, and which of its failures were already said.

A clustered broker (RabbitMQ's or NATS's MQTT listener) is several nodes, each with its own
URL; a persistent session and its queued messages live in the cluster, not in one node, so
a client that loses its node carries on at another. ``NodeCycle`` is that choice for both
MQTT clients (``facility.mqtt`` and ``facility.mqtt_session``): stay on a node while it
works; after a failed attempt or a lost connection, try the next one, round the list; back
off only once every node has failed in a row (``round_failed``). It also remembers the last
failure logged per node, so that a duty engineer reads each distinct reason once, not once
per retry. Pure: no I/O, no clock; a client calls it from one thread."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from facility.mqtt_endpoint import MqttUrl

log = logging.getLogger(__name__)


class NodeCycle:
    def __init__(self, urls: Sequence[MqttUrl]) -> None:
        if not urls:
            raise ValueError("a broker needs at least one URL")
        self.urls = tuple(urls)
        self._index = 0
        self._failures_in_row = 0
        self._said: dict[MqttUrl, str] = {}

    @property
    def current(self) -> MqttUrl:
        return self.urls[self._index]

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    @property
    def round_failed(self) -> bool:
        """Every node has failed since the last connection that worked: time to back off."""
        return self._failures_in_row > 0 and self._failures_in_row % len(self.urls) == 0

    def advance(self) -> MqttUrl:
        """Move on to the next node (the same one for a single URL) and return it."""
        self._index = (self._index + 1) % len(self.urls)
        return self.current

    def failed(self, reason: str) -> bool:
        """An attempt at the current node failed for ``reason``; True if that is news for
        this node (worth a WARNING), False for a repeat (DEBUG)."""
        self._failures_in_row += 1
        news = self._said.get(self.current) != reason
        self._said[self.current] = reason
        return news

    def connected(self) -> None:
        """The current node took the connection: its old failure is forgotten."""
        self._failures_in_row = 0
        self._said.pop(self.current, None)

    def describe(self) -> str:
        """``mqtt://b:1883 (node 2 of 3)``, or just the URL for a single broker."""
        if not self.several:
            return str(self.current)
        return f"{self.current} (node {self._index + 1} of {len(self.urls)})"
