"""One active instance per (service, site partition): a PostgreSQL session advisory lock held
on a connection of its own, and the service's work run only while it is held.

Two or more instances of ingest or rules (on different machines) share one persistent MQTT
session name; ``run_while_active`` has each wait for the lock named after that session, run
the service (connect to MQTT, load its state, consume) once it holds it, and stop it the
moment the lock is in doubt. So the broker's session is consumed by one instance at a time:

- the standby tries ``pg_try_advisory_lock`` every ``poll_s`` and opens no MQTT session
  before it holds the lock (two instances connecting with one client id would take the
  session from each other in turn);
- the active checks its lock connection every ``check_s``; a check not answered within
  ``check_timeout_s`` (a dead or cut-off server), a broken connection (a database failover:
  Patroni demotes the old primary, which ends its connections, before it promotes another,
  and the new primary holds no lock) or the process's own stop ends its term: the service's
  stop signal is set, it finishes the message in hand, disconnects (the broker keeps the
  session and redelivers what was not acknowledged) and the instance stands by again;
- the server lets go of a dead instance's lock when its connection ends: at once when the
  process dies (its socket closes), within ``server_release_s`` when its machine vanishes
  (TCP keepalives the lock connection asks the server for; an idle connection would
  otherwise hold the lock for hours). An instance that is cut off notices (``check_s`` +
  ``check_timeout_s``) before the server releases its lock, so it has stopped before
  another starts.

An active instance that reaches the database but no broker node hands over too (given a
``BrokerLink``, ``facility.broker_link``): once its receiving session has had no connection
for ``broker_grace_s`` (longer than a broker node's failover, so that one does not move the
active role), its term ends the same way, the lock is released, and the instance stands
aside for ``broker_grace_s`` and then until a broker node accepts a TCP connection again,
before it tries the lock (taking it back at once would win the race against the standby
that can reach the broker).

The broker's client-id takeover is the second fence: should two ever connect, the broker
hands the session to the newer connection and drops the older one. A term's state (rule
timers, sequence tracking) is loaded from the database when the term starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from facility.broker_link import BrokerLink
from facility.db.connect import connect, hosts
from facility.mqtt_endpoint import MqttUrl
from facility.stopping import Stopping, within

log = logging.getLogger(__name__)
Term = Callable[[Stopping, str], Coroutine[Any, Any, None]]  # (stop signal, database URL)
DEFAULT_BROKER_GRACE_S = 15.0  # above a broker node's failover (about 6 s with RabbitMQ)
PROBE_S = 2.0  # standing aside after a hand-over: how often the broker's nodes are probed


@dataclass(frozen=True, slots=True)
class LockTiming:
    """How quickly a standby takes over and a cut-off active notices; all in seconds."""

    poll_s: float = 0.5  # a standby tries the lock this often
    check_s: float = 0.5  # the active checks its lock connection this often
    check_timeout_s: float = 1.5  # a check without an answer by then: the connection is dead
    connect_timeout_s: int = 2  # per host of a multi-host target (libpq's minimum)
    keepalive_idle_s: int = 2  # TCP keepalives, both ends of the lock connection
    keepalive_interval_s: int = 1
    keepalive_count: int = 2
    wind_down_s: float = 10.0  # for a term to end by itself once its lock is in doubt
    # no broker connection this long: hand the active role over (a node failover, ~6 s with
    # the centre's RabbitMQ, must not move it)
    broker_grace_s: float = DEFAULT_BROKER_GRACE_S

    def __post_init__(self) -> None:
        if min(self.poll_s, self.check_s, self.check_timeout_s) <= 0:
            raise ValueError("lock intervals must be positive")
        if not self.check_s <= self.broker_grace_s <= 3600:
            raise ValueError(f"the broker grace ({self.broker_grace_s:g} s) must be within "
                             f"{self.check_s:g}..3600 s (it is checked every "
                             f"{self.check_s:g} s)")
        if self.notice_s >= self.server_release_s:
            raise ValueError(f"the active must notice a lost database ({self.notice_s:g} s) "
                             f"before the server releases its lock ({self.server_release_s:g} s)")

    @property
    def notice_s(self) -> float:
        """Longest time for the active to notice that its lock connection is dead."""
        return self.check_s + self.check_timeout_s

    @property
    def server_release_s(self) -> float:
        """Longest time for the server to drop the lock of an instance whose machine
        vanished (idle connection, no answer to keepalives)."""
        return float(self.keepalive_idle_s + self.keepalive_interval_s * self.keepalive_count)

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq parameters for a connection that notices a dead peer within seconds at both
        ends (the server's keepalive settings go in ``options``; they are per session)."""
        user_timeout_ms = int(self.server_release_s * 1000)
        server = (f"-c tcp_keepalives_idle={self.keepalive_idle_s} "
                  f"-c tcp_keepalives_interval={self.keepalive_interval_s} "
                  f"-c tcp_keepalives_count={self.keepalive_count} "
                  f"-c tcp_user_timeout={user_timeout_ms}")
        return {"connect_timeout": self.connect_timeout_s, "keepalives": 1,
                "keepalives_idle": self.keepalive_idle_s,
                "keepalives_interval": self.keepalive_interval_s,
                "keepalives_count": self.keepalive_count,
                "tcp_user_timeout": user_timeout_ms, "options": server}


class NotPrimary(OSError):
    """The lock connection reached a standby (its locks would not fence anything)."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(f"{host} is a standby, not the primary")


class _End(Enum):
    """How a term ended, hence what the instance does next."""

    DONE = "done"  # by itself, or at the process's stop: ``run`` returns
    LOCK = "lock"  # the lock in doubt or the database unreachable: stand by again
    BROKER = "broker"  # no broker for the grace: stand aside, then stand by again


class ActiveLock:
    """The lock ``name`` on ``database_url``; ``run`` runs terms while it is held. With
    ``broker`` (followed by the term) a term without a broker connection for
    ``timing.broker_grace_s`` ends too, and the instance stands aside before standing by."""

    def __init__(self, database_url: str, name: str, timing: LockTiming | None = None,
                 broker: BrokerLink | None = None) -> None:
        self._url = database_url
        self.name = name
        self.timing = timing or LockTiming()
        self.broker = broker
        self.terms = 0  # how many times this instance became active
        self.handovers = 0  # terms ended for want of a broker
        self.active = False
        # the lock connection's application_name: who is active, seen in pg_stat_activity
        self.holder = f"lock {name} pid {os.getpid()} {socket.gethostname()}"

    async def run(self, term: Term, stopping: Stopping) -> None:
        """Until ``stopping``: wait for the lock, run ``term(term_stopping, database_url)``
        while it is held (``term_stopping`` is set when the lock is in doubt, the broker
        absent or at ``stopping``; ``database_url`` names the server holding the lock first,
        see ``primary_first``), stand by again. Returns when ``stopping`` is set or a term
        ends by itself."""
        while not stopping.is_set():
            conn = await self._acquire(stopping)
            if conn is None:
                return
            try:
                end = await self._term(conn, term, stopping)
            finally:
                self.active = False
                await _close(conn)  # the lock is released with its connection
            if end is _End.DONE:
                return
            if end is _End.BROKER:
                await self._stand_aside(stopping)
            else:
                await stopping.sleep(self.timing.poll_s)

    async def _term(self, conn: psycopg.AsyncConnection[Any], term: Term,
                    stopping: Stopping) -> _End:
        """One active term, and how it ended."""
        self.terms += 1
        self.active = True
        log.info("active for %s (term %d, database %s:%s)", self.name, self.terms,
                 conn.info.host, conn.info.port)
        term_stopping = Stopping()
        url = primary_first(self._url, conn.info.host, conn.info.port)
        if self.broker is not None:
            self.broker.forget()  # until the term follows its new session
        body = asyncio.create_task(term(term_stopping, url), name=f"active[{self.name}]")
        watch = asyncio.create_task(self._watch(conn), name=f"lock-watch[{self.name}]")
        absent = asyncio.create_task(self._watch_broker(), name=f"broker-watch[{self.name}]")
        stop = asyncio.create_task(stopping.wait(), name=f"lock-stop[{self.name}]")
        tasks = (watch, absent, stop, body)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            end = self._verdict(body, watch, absent, stopping, term_stopping)
            # the service winds down by itself; one stuck on a dead database is cancelled
            if not body.done():
                await asyncio.wait({body}, timeout=self.timing.wind_down_s)
            if not body.done():
                body.cancel()
                await asyncio.wait({body})
            return self._ended(body, end, stopping)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.broker is not None:
                self.broker.forget()

    def _verdict(self, body: asyncio.Task[None], watch: asyncio.Task[str],
                 absent: asyncio.Task[str], stopping: Stopping,
                 term_stopping: Stopping) -> _End:
        """Why the term ends (the first of its watchers to fire); the term is told."""
        if body.done():
            return _End.DONE
        if watch.done():
            log.warning("%s: lock connection lost (%s): stopping consumption, standing by",
                        self.name, watch.result())
            term_stopping.set(f"lock lost: {watch.result()}")
            return _End.LOCK
        if absent.done():
            self.handovers += 1
            log.warning("%s: %s: handing the active role to a standby", self.name,
                        absent.result())
            term_stopping.set(absent.result())
            return _End.BROKER
        term_stopping.set(stopping.reason)
        return _End.DONE

    def _ended(self, body: asyncio.Task[None], end: _End, stopping: Stopping) -> _End:
        """What the finished term means for the instance; a term that failed on anything
        but the database raises here."""
        if body.cancelled():
            return end
        exc = body.exception()
        if isinstance(exc, (psycopg.OperationalError, OSError)):
            log.warning("%s: the active term ended, database unreachable (%s); standing "
                        "by", self.name, str(exc).strip() or type(exc).__name__)
            if stopping.is_set():
                return _End.DONE
            return _End.BROKER if end is _End.BROKER else _End.LOCK
        if exc is not None:
            raise exc
        return end

    async def _watch_broker(self) -> str:
        """Returns (the reason) once the term has had no broker connection for the grace;
        never without a ``BrokerLink``."""
        if self.broker is None:
            await asyncio.Event().wait()
        assert self.broker is not None
        while True:
            await asyncio.sleep(self.timing.check_s)
            if self.broker.lost():
                break
        return (f"no MQTT broker reachable for {self.timing.broker_grace_s:g} s "
                f"({self.broker.describe()})")

    async def _stand_aside(self, stopping: Stopping) -> None:
        """After a hand-over for want of a broker: wait ``broker_grace_s`` (the standby
        takes the lock meanwhile), then until a broker node accepts a TCP connection."""
        assert self.broker is not None
        if await stopping.sleep(self.timing.broker_grace_s):
            return
        said = False
        while not stopping.is_set():
            node = await self._probe(stopping)
            if stopping.is_set():
                return
            if node is not None:
                if said:
                    log.info("%s: MQTT broker %s answers again: standing by for the lock",
                             self.name, node)
                return
            if not said:
                log.info("%s: still no MQTT broker reachable (%s): not taking the lock until "
                         "one answers (probing every %g s)", self.name, self.broker.describe(),
                         PROBE_S)
                said = True
            await stopping.sleep(PROBE_S)

    async def _probe(self, stopping: Stopping) -> MqttUrl | None:
        """The broker's first node that accepts TCP, or None; given up at ``stopping`` (a
        probe of silent nodes takes their connect timeouts, longer than a stop may)."""
        assert self.broker is not None
        probe = asyncio.ensure_future(self.broker.reachable())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({probe, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (probe, stop):
                task.cancel()
            await asyncio.gather(probe, stop, return_exceptions=True)
        return None if probe.cancelled() else probe.result()

    async def _acquire(self, stopping: Stopping) -> psycopg.AsyncConnection[Any] | None:
        """A connection holding the lock, or None at ``stopping``."""
        standing_by = False
        failure = ""
        while not stopping.is_set():
            conn = None
            try:
                # libpq tries a multi-host target's hosts in turn, each within its timeout
                conn = await within(self.timing.connect_timeout_s * len(hosts(self._url)) + 1.0,
                                    self._connect())
                while not stopping.is_set():
                    if await within(self.timing.check_timeout_s, self._try(conn)):
                        return conn
                    if not standing_by:
                        log.info("another instance is active for %s; standing by", self.name)
                        standing_by = True
                    await stopping.sleep(self.timing.poll_s)
            except (psycopg.Error, TimeoutError, OSError) as exc:
                reason = str(exc).strip() or type(exc).__name__
                if reason != failure:
                    log.warning("%s: cannot reach the database for the lock (%s); retrying "
                                "every %g s", self.name, reason, self.timing.poll_s)
                    failure = reason
            if conn is not None:
                await _close(conn)
            await stopping.sleep(self.timing.poll_s)
        return None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await connect(self._url, application_name=self.holder[:63],
                             **self.timing.connect_kwargs())

    async def _try(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Whether this connection now holds the lock. Only a primary's locks count (a hot
        standby grants advisory locks too): on a standby, ``NotPrimary`` (reconnect)."""
        cur = await conn.execute(
            "SELECT CASE WHEN pg_is_in_recovery() THEN NULL"
            " ELSE pg_try_advisory_lock(hashtextextended(%s, 0)) END",
            (f"facility.active.{self.name}",))
        row = await cur.fetchone()
        if row is None or row[0] is None:
            raise NotPrimary(conn.info.host)
        return bool(row[0])

    async def _watch(self, conn: psycopg.AsyncConnection[Any]) -> str:
        """Returns (the reason) once the lock connection does not answer or broke."""
        while True:
            await asyncio.sleep(self.timing.check_s)
            try:
                cur = await within(self.timing.check_timeout_s,
                                   conn.execute("SELECT pg_is_in_recovery()"))
                row = await cur.fetchone()
                if row is None or row[0]:
                    return f"{conn.info.host} is no longer the primary"
            except TimeoutError:
                return f"no answer within {self.timing.check_timeout_s:g} s"
            except psycopg.Error as exc:
                return str(exc).strip() or type(exc).__name__


def primary_first(url: str, host: str, port: int) -> str:
    """``url`` with ``host:port`` (the server that granted the lock: the primary) tried
    first. libpq tries a multi-host target's hosts in order, and each dead one before the
    primary costs its connect timeout, on every connection a term opens; the order is only
    a preference (``target_session_attrs`` still decides). Unchanged for a single host or
    a host the URL does not list."""
    params = conninfo_to_dict(url)
    hosts = str(params.get("host", "")).split(",")
    if len(hosts) < 2:
        return url
    ports = str(params["port"]).split(",") if "port" in params else [""]
    ports = ports * len(hosts) if len(ports) == 1 else ports
    pairs = list(zip(hosts, ports, strict=True))
    first = [i for i, (h, p) in enumerate(pairs) if h == host and p in ("", str(port))]
    if not first:
        return url
    ordered = [pairs[first[0]], *(pair for i, pair in enumerate(pairs) if i != first[0])]
    params["host"] = ",".join(h for h, _p in ordered)
    if "port" in params:
        params["port"] = ",".join(p for _h, p in ordered)
    return make_conninfo("", **params)


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close without waiting on a dead server (the socket is dropped)."""
    with contextlib.suppress(psycopg.Error, TimeoutError, OSError):
        await within(1.0, conn.close())
