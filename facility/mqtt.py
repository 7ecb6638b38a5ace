"""The asyncio adapter over paho-mqtt 2.x: the one place paho's network thread is bridged.

``MqttClient`` connects in the background and reconnects with paho's capped backoff,
re-subscribes on every connect, lets callers await a QoS 1 PUBACK, and hands received
messages to one async iterator through a bounded queue. When the queue is full, paho's
network thread waits, so the broker holds the backlog instead of our memory. With
``manual_ack`` a QoS 1 message is acknowledged only when the consumer calls ``ack()``
(ingest acknowledges after its batch is committed).

The endpoint's login and TLS context are given to paho; a refused login, a certificate
that is not accepted or a broker that cannot be reached is logged once per distinct reason
(naming the broker) while paho retries with its backoff (1 s doubling to ``reconnect_max_s``).
With a cluster's list of URLs, every new attempt goes to the next node (``NodeCycle``): a
node refused, unreachable or silent for two keepalives is left for the next one; paho
resends the QoS 1 messages in flight there.
Outgoing QoS 1 messages paho keeps (in flight or waiting for a connection) are bounded by
``max_queued``: past it a publish fails with ``MqttError`` instead of growing memory while
the broker is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from facility.mqtt_endpoint import (
    MqttEndpoint,
    MqttUrl,
    closed_before_connack,
    failure_reason,
    no_delay,
    refused_login,
)
from facility.mqtt_endpoint import Will as Will  # re-exported: the gateway's last word
from facility.mqtt_message import Message as Message  # re-exported
from facility.mqtt_nodes import NodeCycle

log = logging.getLogger(__name__)


class MqttError(RuntimeError):
    pass


class MqttClient:
    """An asyncio MQTT client. Use ``async with MqttClient(...) as c:``."""

    def __init__(
        self,
        url: str | MqttEndpoint,
        client_id: str,
        *,
        persistent: bool = False,
        manual_ack: bool = False,
        will: Will | None = None,
        protocol: str = "5",
        queue_size: int = 10_000,
        max_inflight: int = 1_000,
        max_queued: int = 20_000,
        keepalive_s: int | None = None,
        reconnect_max_s: int = 30,
    ) -> None:
        self.endpoint = MqttEndpoint.of(url)
        self.nodes = NodeCycle(self.endpoint.urls)  # paho's thread only, once started
        self.client_id = client_id
        self._v5 = protocol == "5"
        self._persistent = persistent
        self._manual_ack = manual_ack
        self._keepalive_s = keepalive_s or self.endpoint.keepalive_s
        self._attempts = self._ended_attempt = 0  # paho's thread: attempts so far, last ended
        # Received messages: paho's thread appends, the event loop pops. A slot is taken per
        # message, so when the consumer is queue_size behind, paho's thread waits (the broker
        # holds the backlog); the loop is woken once per burst, not once per message.
        self._queue_size = queue_size
        self._inbox: deque[Message] = deque()
        self._slots = threading.BoundedSemaphore(queue_size)
        self._wake_pending = False  # guarded by _lock
        self._has_messages = asyncio.Event()
        self._subscriptions: dict[str, int] = {}
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._acked_early: set[int] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        # set once the broker has acknowledged every subscription of the current connection
        self.subscribed = asyncio.Event()
        self._unacked_subscribes: set[int] = set()
        self._subacks_early: set[int] = set()
        self._session_up = False  # paho's view, guarded by _lock (connected is the loop's)
        self._closing = False
        self._was_connected = False
        self.publishes_refused = 0  # PUBACKs with a failure reason (MQTT 5)
        self._refused = False  # this attempt's CONNACK was a refusal (paho thread only)
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            clean_session=None if self._v5 else not persistent,
            manual_ack=manual_ack,
        )
        self._client.connect_timeout = self.endpoint.connect_timeout_s
        self._client.max_inflight_messages_set(max_inflight)
        # bounded: past it paho refuses a publish (MqttError), which the gateway spools to disk
        self._client.max_queued_messages_set(max_queued)
        self._client.reconnect_delay_set(min_delay=1, max_delay=max(1, reconnect_max_s))
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_socket_open = no_delay
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_pre_connect = self._on_pre_connect
        self._secure()

    def _secure(self) -> None:
        """Hand paho the login and the TLS context (host name checked)."""
        if self.endpoint.username:
            self._client.username_pw_set(self.endpoint.username, self.endpoint.password_text())
        ctx = self.endpoint.ssl_context()
        if ctx is not None:
            self._client.tls_set_context(ctx)

    @property
    def url(self) -> MqttUrl:
        """The node this client is connected or connecting to."""
        return self.nodes.current

    async def __aenter__(self) -> MqttClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Begin connecting in the background; ``connected`` is set at each CONNACK."""
        self._loop = asyncio.get_running_loop()
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if self._persistent:
                props.SessionExpiryInterval = 7 * 24 * 3600
            props.ReceiveMaximum = min(self._queue_size, 65535)
        self._client.connect_async(
            self.url.host, self.url.port, keepalive=self._keepalive_s,
            clean_start=not self._persistent if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self._client.loop_start()

    async def wait_connected(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.connected.wait()
        except TimeoutError:
            raise MqttError(f"no connection to {self.endpoint} in {timeout_s:.0f} s") from None

    async def close(self) -> None:
        self._closing = True
        await asyncio.to_thread(self._client.disconnect)
        await asyncio.to_thread(self._client.loop_stop)
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        # Under the lock with _on_connect: either its snapshot of the subscriptions holds this
        # one, or the session is already up and it is sent here; never neither, never both.
        with self._lock:
            self._subscriptions[topic_filter] = qos
            send_now = self._session_up
        if send_now:
            self.subscribed.clear()
            self._send_subscribe(self._client, topic_filter, qos)

    async def wait_subscribed(self, timeout_s: float | None = None) -> None:
        """Wait until the broker has acknowledged every subscription (SUBACK), so that a
        message published from now on reaches this client."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.subscribed.wait()
        except TimeoutError:
            raise MqttError(f"subscriptions not acknowledged by {self.endpoint} within "
                            f"{timeout_s:.0f} s") from None

    def _send_subscribe(self, client: paho.Client, topic_filter: str, qos: int) -> None:
        rc, mid = client.subscribe(topic_filter, qos=qos)  # never under self._lock
        if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
            with self._lock:
                if mid in self._subacks_early:
                    self._subacks_early.discard(mid)
                else:
                    self._unacked_subscribes.add(mid)

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a message; the returned future completes at PUBACK (QoS 1) or at send."""
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        # Only the event loop's thread touches _pending and _acked_early (PUBACKs are handed
        # over by _on_publish), so no lock is held while paho takes its own mutexes.
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            fut.set_exception(
                MqttError(f"publish to {topic} refused: {paho.error_string(info.rc)}"))
            return fut
        if qos == 0 or info.mid in self._acked_early:
            self._acked_early.discard(info.mid)
            fut.set_result(None)
        else:
            self._pending[info.mid] = fut
        return fut

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Publish and wait for the broker's PUBACK (QoS 1)."""
        fut = self.publish_nowait(topic, payload, qos=qos, retain=retain)
        async with asyncio.timeout(timeout_s):
            await fut

    @property
    def inflight(self) -> int:
        return len(self._pending)

    def move_on(self, reason: str) -> bool:
        """Leave a node that holds the connection but has stopped acknowledging (a cluster's
        node stuck while the queues of a lost node move): the connection is dropped and
        paho's reconnect goes to the next node. Several nodes only; False if nothing was."""
        sock = self._client.socket() if self.nodes.several and self.connected.is_set() else None
        if not isinstance(sock, socket.socket):
            return False
        log.warning("MQTT node %s: %s; moving on to the next node", self.nodes.describe(), reason)
        with contextlib.suppress(OSError):  # the plain socket's: paho's thread owns the TLS
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return True

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            while self._inbox:
                message = self._inbox.popleft()
                self._slots.release()
                yield message
            self._has_messages.clear()
            if not self._inbox:
                await self._has_messages.wait()

    def ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

    # paho network-thread callbacks: hand over to the event loop, never block it long.

    def _on_pre_connect(self, client: paho.Client, _u: Any) -> None:
        """Before each attempt but the first: the next node. paho's public host setter
        refuses while it is connecting, so its attributes are set as connect_async does."""
        self._attempts += 1
        if self._attempts > 1 and self.nodes.several:
            client._host, client._port = self.nodes.advance().host, self.nodes.current.port

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            self._refused = True
            self._report_failure(refused_login(self.endpoint, str(rc).lower()))
            return
        self.nodes.connected()
        self._call(self.subscribed.clear)
        with self._lock:
            self._unacked_subscribes.clear()
            self._session_up = True
            subscriptions = list(self._subscriptions.items())
        for topic_filter, qos in subscriptions:
            self._send_subscribe(client, topic_filter, qos)
        self._call(self._set_subscribed_if_idle)
        if self._was_connected:
            log.info("MQTT connection to %s restored", self.nodes.describe())
        else:
            log.info("MQTT connected to %s, client %s", self.endpoint.describe(),
                     self.client_id)
        self._was_connected = True
        self._call(self.connected.set)

    def _set_subscribed_if_idle(self) -> None:
        with self._lock:
            idle = not self._unacked_subscribes
        if idle:
            self.subscribed.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        with self._lock:
            was_up, self._session_up = self._session_up, False
        refused, self._refused = self._refused, False
        self._call(self.connected.clear)
        self._call(self.subscribed.clear)
        # paho says a keepalive timeout twice: once per attempt is the news
        said, self._ended_attempt = self._ended_attempt == self._attempts, self._attempts
        if self._closing or refused or said:
            return
        if was_up:
            log.warning("MQTT connection to %s lost (%s); reconnecting", self.nodes.describe(), rc)
        else:
            self._report_failure(closed_before_connack(self.endpoint))

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        # paho calls this inside its ``except OSError`` around the connect: the error is the
        # one being handled
        exc = sys.exc_info()[1]
        if not self._closing:
            self._report_failure(
                failure_reason(exc, self.endpoint, self.url) if exc else "connection failed")

    def _report_failure(self, reason: str) -> None:
        """Log a connection failure once per distinct reason and node; repeats at DEBUG."""
        where = self.nodes.describe()
        if self.nodes.failed(reason):
            log.warning("MQTT broker %s: %s; retrying with backoff (up to 30 s)%s", where,
                        reason, ", next node first" if self.nodes.several else "")
        else:
            log.debug("MQTT broker %s: %s (again)", where, reason)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        m = Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid,
                    self if self._manual_ack else None)
        while not self._slots.acquire(timeout=0.5):
            if self._closing:  # not handed over: unacknowledged, the broker redelivers it
                log.debug("dropped delivery of %s at shutdown", msg.topic)
                return
        with self._lock:
            self._inbox.append(m)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._call(self._wake_consumer)

    def _wake_consumer(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._has_messages.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any = None, _p: Any = None) -> None:
        if getattr(rc, "is_failure", False):  # MQTT 5: e.g. the ACL denies the topic
            self._publish_refused(str(rc))
        # paho calls this holding its out-message mutex: resolve on the event loop's thread,
        # where publish_nowait runs, so no lock of ours is ever taken under paho's.
        self._call(lambda: self._resolve_puback(mid))

    def _publish_refused(self, reason: str) -> None:
        """The broker took a message but refused to deliver it: said once at WARNING."""
        with self._lock:
            first, self.publishes_refused = not self.publishes_refused, self.publishes_refused + 1
        if first:
            log.warning("MQTT broker %s refused a publish of %s: %s (the broker's ACL?); "
                        "further refusals are logged at DEBUG", self.url,
                        self.endpoint.username or "an anonymous client", reason.lower())
        else:
            log.debug("MQTT broker %s refused a publish: %s", self.url, reason)

    def _resolve_puback(self, mid: int) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None:
            self._acked_early.add(mid)
            return
        if not fut.done():
            fut.set_result(None)

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any = None) -> None:
        for code in codes or ():
            if getattr(code, "is_failure", False):
                log.warning("MQTT %s refused a subscription: %s", self.url, code)
        with self._lock:
            if mid in self._unacked_subscribes:
                self._unacked_subscribes.discard(mid)
            else:
                self._subacks_early.add(mid)
            done = not self._unacked_subscribes
        if done:
            self._call(self.subscribed.set)

    def _call(self, fn: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn)

