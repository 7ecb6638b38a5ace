"""The receiving MQTT client of ingest and rules: a small asyncio implementation of the
subscriber side of MQTT 5 and 3.1.1 (CONNECT, SUBSCRIBE, PUBLISH QoS 0/1, PUBACK, PINGREQ),
built for volume and for latency under volume (publishing stays with ``facility.mqtt``).

Why not ``facility.mqtt`` (paho)? paho reads each packet with several ``recv`` calls, parses
it in Python and hands it over thread to loop one by one: about 16,000 messages/s on this
machine with no work done at all. Here one ``data_received`` call parses every complete
PUBLISH in the chunk into a list of ``Delivery`` tuples; the consumer takes the whole list
at once (``take``), and acknowledges committed messages with one socket write (``ack``).

Contract: a persistent session (MQTT 5 clean start off and a session expiry; 3.1.1 clean
session off), so unacknowledged QoS 1 messages are redelivered after a crash or reconnect.
MQTT 5 Receive Maximum bounds the messages in flight to us, hence our memory; reading is
also paused above ``max_pending`` deliveries not yet taken. Acknowledgements carry the
connection ``epoch`` they were received on and are sent only on that connection: after a
reconnect the broker redelivers the rest (ingest's idempotent writes store them once; rules
see a repeat of a value they already hold, which changes nothing).
Reconnects use capped, jittered exponential backoff; a dead broker is noticed by keepalive.
With a cluster's list of URLs (``NodeCycle``) a failed attempt or a lost connection moves
on to the next node at once (the session and its unacknowledged messages live in the
cluster); the backoff applies once every node has failed in a row. A node that neither
answers nor resets (its machine is gone) is given up after ``connect_timeout_s`` when
connecting, after 1.5-2 keepalives once connected.
The endpoint's user name and password go in the CONNECT, ``mqtts://`` connects through the
endpoint's TLS context (host name verified); a refused login, a certificate that is not
accepted or an unreachable broker is logged once per distinct reason, naming the broker."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Sequence

from facility.mqtt_endpoint import (
    MqttEndpoint,
    MqttUrl,
    closed_before_connack,
    connack_reason,
    failure_reason,
    refused_login,
)
from facility.mqtt_nodes import NodeCycle
from facility.mqtt_packets import (
    DISCONNECT,
    PINGREQ,
    PacketReader,
    ProtocolViolation,
    puback_packets,
    subscribe_packet,
)
from facility.mqtt_packets import Delivery as Delivery  # re-exported: ingest, rules
from facility.mqtt_packets import connect_packet as connect_packet  # and the benchmarks
from facility.mqtt_packets import varint as varint

log = logging.getLogger(__name__)
class ConnectRefused(Exception):
    """The broker answered the CONNECT with a refusal (bad login, not authorized, ...)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _Protocol(asyncio.Protocol):
    def __init__(self, session: MqttSession) -> None:
        self._session = session
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._session._received(data)
        except (ProtocolViolation, struct.error, IndexError) as exc:
            log.warning("MQTT stream from the broker is malformed (%s): reconnecting", exc)
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class MqttSession:
    """Subscribe to ``filters`` (QoS 1) and keep the session up until ``run`` is cancelled."""

    def __init__(
        self, url: str | MqttEndpoint, client_id: str, filters: Sequence[str], *,
        protocol: str = "5",
        receive_maximum: int = 20_000, max_pending: int = 50_000,
        keepalive_s: int | None = None,
        backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0,
    ) -> None:
        self.endpoint = MqttEndpoint.of(url)
        self.nodes = NodeCycle(self.endpoint.urls)
        self._ssl = self.endpoint.ssl_context()
        self.client_id = client_id
        self._filters = list(filters)
        self._v5 = protocol == "5"
        self._receive_maximum = max(1, min(receive_maximum, 65535))
        self._max_pending = max_pending
        self._keepalive_s = keepalive_s or self.endpoint.keepalive_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._reader = PacketReader(v5=self._v5)
        self._pending: list[Delivery] = []
        self._proto: _Protocol | None = None
        self._paused = False
        self._last_rx = 0.0
        self.epoch = 0
        self.arrived = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.connections = 0

    @property
    def url(self) -> MqttUrl:
        """The node this session is connected or connecting to."""
        return self.nodes.current

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take(self, limit: int | None = None) -> list[Delivery]:
        """Deliveries received so far (up to ``limit``), oldest first."""
        if limit is None or limit >= len(self._pending):
            taken, self._pending = self._pending, []
        else:
            taken, self._pending = self._pending[:limit], self._pending[limit:]
        if not self._pending:
            self.arrived.clear()
        if self._paused and len(self._pending) < self._max_pending // 2:
            self._paused = False
            if self._proto is not None and self._proto.transport is not None:
                self._proto.transport.resume_reading()
        return taken

    def ack(self, deliveries: Sequence[Delivery]) -> int:
        """PUBACK the QoS 1 deliveries of the current connection; the number sent."""
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return 0
        pids = [d.pid for d in deliveries if d.pid and d.epoch == self.epoch]
        if pids:
            proto.transport.write(puback_packets(pids))
        return len(pids)

    async def run(self) -> None:
        """Connect, subscribe, receive; reconnect with backoff when the connection ends."""
        loop = asyncio.get_running_loop()
        delay = self._backoff[0]
        down_since: float | None = None
        while True:
            try:
                await self._connect()
            except (OSError, TimeoutError, ConnectionError, ProtocolViolation,
                    ConnectRefused) as exc:
                if down_since is None:
                    down_since = loop.time()
                self._failed(self._reason(exc))
                self.nodes.advance()
                if self.nodes.round_failed:  # every node refused: back off before the next
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, self._backoff[1])
                continue
            self.nodes.connected()
            if down_since is not None:
                log.info("MQTT %s back after %.1f s", self.nodes.describe(),
                         loop.time() - down_since)
            delay = self._backoff[0]
            cause = await self._serve()
            self.subscribed.clear()
            down_since = loop.time()
            log.warning("MQTT connection to %s lost (%s); reconnecting%s", self.nodes.describe(),
                        cause or "closed by the broker",
                        " to the next node" if self.nodes.several else "")
            self.nodes.advance()

    def _failed(self, reason: str) -> None:
        """Say a failed attempt once per distinct reason and node; repeats at DEBUG."""
        where = self.nodes.describe()
        if self.nodes.failed(reason):
            log.warning("MQTT broker %s: %s; retrying with backoff (up to %.0f s)%s", where,
                        reason, self._backoff[1],
                        ", next node first" if self.nodes.several else "")
        else:
            log.debug("MQTT broker %s: %s (again)", where, reason)

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, ConnectRefused):
            return refused_login(self.endpoint, exc.reason)
        if isinstance(exc, ProtocolViolation):
            return exc.reason
        if type(exc) is ConnectionError:  # ours, already worded
            return str(exc)
        return failure_reason(exc, self.endpoint, self.url)

    async def close(self) -> None:
        proto, self._proto = self._proto, None
        # a closed TLS transport cannot be written to at all (AttributeError)
        if proto is not None and proto.transport is not None \
                and not proto.transport.is_closing():
            proto.transport.write(DISCONNECT)
            proto.transport.close()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.epoch += 1
        self._reader = PacketReader(v5=self._v5)
        self._reader.epoch = self.epoch
        self._connack: asyncio.Future[bytes] = loop.create_future()
        self._suback: asyncio.Future[bytes] = loop.create_future()
        async with asyncio.timeout(self.endpoint.connect_timeout_s):
            _, proto = await loop.create_connection(
                lambda: _Protocol(self), self.url.host, self.url.port, ssl=self._ssl,
                server_hostname=self.url.host if self._ssl is not None else None)
        self._proto = proto
        self._paused = False
        assert proto.transport is not None
        try:
            async with asyncio.timeout(self.endpoint.connect_timeout_s * 2):
                proto.transport.write(connect_packet(
                    self.client_id, v5=self._v5, keepalive_s=self._keepalive_s,
                    receive_maximum=self._receive_maximum, clean=False,
                    username=self.endpoint.username, password=self.endpoint.password_text()))
                await asyncio.wait({self._connack, proto.lost},
                                   return_when=asyncio.FIRST_COMPLETED)
                if not self._connack.done():
                    raise ConnectionError(closed_before_connack(self.endpoint))
                connack = self._connack.result()
                code = connack[1] if len(connack) > 1 else 255
                if code != 0:
                    raise ConnectRefused(connack_reason(code, v5=self._v5))
                proto.transport.write(subscribe_packet(1, self._filters, v5=self._v5))
                suback = await self._suback
        except BaseException:
            proto.transport.close()
            self._proto = None
            raise
        codes = suback[3:] if self._v5 else suback[2:]
        refused = [f for f, c in zip(self._filters, codes, strict=False) if c >= 0x80]
        if refused:
            log.warning("MQTT %s refused subscriptions %s", self.url, refused)
        self.connections += 1
        log.info("MQTT connected to %s as %s, client %s (session %s)", self.nodes.describe(),
                 self.endpoint.username or "anonymous", self.client_id,
                 "resumed" if connack[0] & 1 else "new")
        self.subscribed.set()

    async def _serve(self) -> BaseException | None:
        proto = self._proto
        assert proto is not None and proto.transport is not None
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        try:
            while not proto.lost.done():
                await asyncio.wait({proto.lost}, timeout=self._keepalive_s / 2)
                if proto.lost.done():
                    break
                if self._paused:  # the consumer is behind: the broker's answers wait unread
                    self._last_rx = loop.time()
                elif loop.time() - self._last_rx > self._keepalive_s * 1.5:
                    proto.transport.abort()  # a dead peer never takes the rest
                    return TimeoutError("no reply to keepalive")
                proto.transport.write(PINGREQ)
            return proto.lost.result()  # type: ignore[no-any-return]
        finally:
            proto.transport.close()
            self._proto = None

    def _received(self, data: bytes) -> None:
        control: list[tuple[int, bytes]] = []
        before = len(self._pending)
        self._reader.feed(data, self._pending, control)
        self._last_rx = asyncio.get_running_loop().time()
        if len(self._pending) > before:
            self.arrived.set()
            if len(self._pending) >= self._max_pending and self._proto is not None:
                assert self._proto.transport is not None
                self._proto.transport.pause_reading()
                self._paused = True
        for kind, body in control:
            if kind == 2 and not self._connack.done():
                self._connack.set_result(body)
            elif kind == 9 and not self._suback.done():
                self._suback.set_result(body)
            elif kind == 14:
                raise ProtocolViolation(f"broker sent DISCONNECT {body[:1].hex()}")
