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

from facility.mqtt_endpoint import MqttEndpoint, MqttUrl
from facility.stopping import within


class BrokerAbsence:
    """How long a term has been without a broker connection; no I/O, no clock of its own."""

    def __init__(self, grace_s: float) -> None:
        if not grace_s > 0:
            raise ValueError("the broker grace must be positive")
        self.grace_s = grace_s
        self._since: float | None = None  # down since (None: up, or not following)

    def started(self, now: float) -> None:
        """The term began connecting: not connected yet, so absent from ``now``."""
        self._since = now

    def observe(self, connected: bool, now: float) -> bool:
        """The connection's state at ``now``; whether it has been down ``grace_s`` or more
        without a break (any connection seen up starts the count again)."""
        if connected:
            self._since = None
            return False
        if self._since is None:
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
        self._connected: Callable[[], bool] | None = None

    def follow(self, connected: Callable[[], bool]) -> None:
        """Called by a term as it starts connecting: ``connected()`` says whether its
        session is up now."""
        self._connected = connected
        self._absence.started(self._clock())

    def forget(self) -> None:
        """The term ended: nothing to follow until the next one."""
        self._connected = None

    def lost(self) -> bool:
        """Whether the followed session has been down ``grace_s`` (False while nothing is
        followed: a term still loading its state from the database)."""
        if self._connected is None:
            return False
        return self._absence.observe(self._connected(), self._clock())

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
