"""Whether an active ingest or rules instance still has an MQTT broker, for its active lock
(``facility.db.active_lock``).

An active instance that reaches the database but no broker node would otherwise keep its
lock while consuming nothing. ``BrokerLink`` is what the lock learns about the broker: the
term (the service, while active) hands it its receiving session's state with ``follow``
once it starts connecting; the lock samples ``lost`` and ends the term once no connection
has been up for ``grace_s``. After such a hand-over the instance stands aside, and
``reachable`` tells it when a broker node accepts a TCP connection again: a bare connect
and close to the node's port, never an MQTT CONNECT (that would take the shared persistent
session from the active instance). The probe sees a node down, refusing or cut off; a node
that accepts TCP but refuses the login still fails the next term, which hands over again
after the grace: the instances alternate, harmlessly (the broker keeps the session).

``BrokerAbsence`` is the decision alone: pure, clock readings passed in."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

from facility.mqtt_endpoint import MqttEndpoint, MqttUrl
from facility.stopping import within


class Followed(Protocol):
    """What the link reads of a receiving session (``facility.mqtt_session.MqttSession``)."""

    @property
    def subscribed(self) -> asyncio.Event:
        """Set while connected and subscribed."""

    @property
    def connections(self) -> int:
        """Connections made so far."""


class BrokerAbsence:
    """How long a term has been without a broker connection; no I/O, no clock of its own."""

    def __init__(self, grace_s: float) -> None:
        if not grace_s > 0:
            raise ValueError("the broker grace must be positive")
        self.grace_s = grace_s
        self._since: float | None = None  # down since (None: up, or not following)
        self._connections = 0

    def started(self, now: float, connections: int = 0) -> None:
        """The term began connecting: not connected yet, so absent from ``now``;
        ``connections`` is its session's count of connections so far."""
        self._since = now
        self._connections = connections

    def observe(self, connected: bool, connections: int, now: float) -> bool:
        """The session's state at ``now`` (up or not, and how many connections it has made
        so far: one made since the last look was up in between, however briefly); whether
        it has been down ``grace_s`` or more without a break."""
        was_up, self._connections = connections != self._connections, connections
        if connected:
            self._since = None
            return False
        if self._since is None or was_up:
            self._since = now
        return now - self._since >= self.grace_s


class BrokerLink:
    """A term's broker connection as its lock sees it, and a probe of the broker's nodes."""

    def __init__(self, endpoint: str | MqttEndpoint, grace_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = MqttEndpoint.of(endpoint)
        self.grace_s = grace_s
        self._clock = clock
        self._absence = BrokerAbsence(grace_s)
        self._session: Followed | None = None

    def follow(self, session: Followed) -> None:
        """Called by a term as it starts connecting its receiving session."""
        self._session = session
        self._absence.started(self._clock(), session.connections)

    def forget(self) -> None:
        """The term ended: nothing to follow until the next one."""
        self._session = None

    def lost(self) -> bool:
        """Whether the followed session has been down ``grace_s`` (False while nothing is
        followed: a term still loading its state from the database)."""
        session = self._session
        if session is None:
            return False
        return self._absence.observe(session.subscribed.is_set(), session.connections,
                                     self._clock())

    def describe(self) -> str:
        urls = self.endpoint.urls
        return str(urls[0]) if len(urls) == 1 else f"{urls[0]} and {len(urls) - 1} more"

    async def reachable(self) -> MqttUrl | None:
        """The first node that accepts a TCP connection (closed at once), or None."""
        for url in self.endpoint.urls:
            try:
                _reader, writer = await within(self.endpoint.connect_timeout_s,
                                               asyncio.open_connection(url.host, url.port))
            except (OSError, TimeoutError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return url
        return None
