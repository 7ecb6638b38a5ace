"""What bench/failover.py measures from outside the services (not a test): a database write
probe and a broker publish probe (how long each engine took to serve again after a kill),
the duty room's view (alarms as the API lists them, first seen when) and the most telemetry
a set-up carries end to end (a burst of numbered messages, timed until every row is stored).
Every probe goes through the same targets as the services: the database target (a libpq
multi-host URL or one address) and the list of broker endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from facility import topics
from facility.messages import Telemetry, encode
from facility.mqtt import MqttClient
from facility.mqtt_endpoint import MqttEndpoint
from facility.site import Device, Site
from facility.topics import TopicKind

log = logging.getLogger("bench.failover")
PROBE_EVERY_S = 0.25


@dataclass
class Outages:
    """Failed probe instants (monotonic) and successes, to tell how long a kill cost."""

    failures: list[float] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)

    def cost_after(self, killed_at: float, window_s: float = 180.0) -> float:
        """From ``killed_at`` to the first success after the last failure of the window
        (0: no probe failed)."""
        failed = [t for t in self.failures if killed_at <= t <= killed_at + window_s]
        if not failed:
            return 0.0
        back = [t for t in self.successes if t > failed[-1]]
        return (back[0] if back else float("nan")) - killed_at


async def probe_database(url: str, out: Outages, timeout_s: float = 2.0) -> None:
    """A committed write every PROBE_EVERY_S, on a new connection each time (as a service
    reconnecting would): the time it takes is the database's failover as services see it."""
    while True:
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s + 1.0):
                conn = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=int(timeout_s),
                    options=f"-c statement_timeout={int(timeout_s * 1000)}")
                async with conn:
                    await conn.execute("CREATE TABLE IF NOT EXISTS bench_probe "
                                       "(at timestamptz NOT NULL)")
                    await conn.execute("INSERT INTO bench_probe VALUES (now())")
            out.successes.append(time.monotonic())
        except (psycopg.Error, TimeoutError, OSError):
            out.failures.append(started)
        await asyncio.sleep(max(0.0, started + PROBE_EVERY_S - time.monotonic()))


async def probe_broker(url: str | MqttEndpoint, protocol: str, topic: str, out: Outages,
                       timeout_s: float = 2.0) -> None:
    """A QoS 1 publish to ``topic`` (one no service reads) every PROBE_EVERY_S through the
    endpoint list, PUBACK awaited."""
    async with MqttClient(url, f"bench-probe-{uuid.uuid4().hex[:6]}", protocol=protocol,
                          reconnect_max_s=1) as client:
        while True:
            started = time.monotonic()
            try:
                await client.publish(topic, b"x", qos=1, timeout_s=timeout_s)
                out.successes.append(time.monotonic())
            except (TimeoutError, Exception):  # a refused publish is a failure too
                out.failures.append(started)
            await asyncio.sleep(max(0.0, started + PROBE_EVERY_S - time.monotonic()))


class DutyRoom:
    """The alarms as the API lists them to the duty room: (source, alarm_type, alarm id) ->
    when first seen. Polls the API instances in turn; a dead one is skipped."""

    def __init__(self, api_urls: list[str], user: str, password: str, site_id: str) -> None:
        self.urls = api_urls
        self.user, self.password, self.site_id = user, password, site_id
        self.seen: dict[tuple[str, str, int], float] = {}
        self.served: dict[str, int] = {u: 0 for u in api_urls}
        self._token: dict[str, str] = {}

    async def run(self, every_s: float = 0.5) -> None:
        """Every instance polled on its own (a dead one must not slow the others)."""
        async with httpx.AsyncClient(timeout=2.0) as http, asyncio.TaskGroup() as tg:
            for url in self.urls:
                tg.create_task(self._watch(http, url, every_s))

    async def _watch(self, http: httpx.AsyncClient, url: str, every_s: float) -> None:
        while True:
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                await self._poll(http, url)
                self.served[url] += 1
            await asyncio.sleep(max(0.0, started + every_s - time.monotonic()))

    async def _poll(self, http: httpx.AsyncClient, url: str) -> None:
        if url not in self._token:
            r = await http.post(f"{url}/api/v1/auth/token",
                                data={"username": self.user, "password": self.password})
            r.raise_for_status()
            self._token[url] = r.json()["access_token"]
        r = await http.get(f"{url}/api/v1/alarms", params={"site": self.site_id,
                                                           "limit": 1000},
                           headers={"Authorization": f"Bearer {self._token[url]}"})
        if r.status_code == 401:
            self._token.pop(url, None)
        r.raise_for_status()
        now = time.time()
        for alarm in r.json():
            key = (str(alarm["source"]), str(alarm["type"]), int(alarm["id"]))
            self.seen.setdefault(key, now)

    def first_seen(self, source: str, alarm_type: str, since: datetime) -> float | None:
        """Wall-clock time the first alarm of ``source``/``alarm_type`` appeared at or after
        ``since`` (None: not seen)."""
        times = [t for (s, a, _id), t in self.seen.items()
                 if s == source and a == alarm_type and t >= since.timestamp() - 1.0]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Burst:
    messages: int
    points: int
    seconds: float
    stored_points: int
    published_s: float  # until the broker had acknowledged every message

    @property
    def points_per_s(self) -> float:
        return self.stored_points / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.stored_points == self.points


def _values(device: Device) -> dict[str, Any]:
    """Quiet readings (no rule fires on them): booleans off, voltages nominal."""
    return {p.name: False if p.type == "bool" else (230.0 if "voltage" in p.name else 10.0)
            for p in device.profile.points}


async def burst(site: Site, gateway: str, url: str | MqttEndpoint, protocol: str,
                database_url: str, *,
                messages: int, window: int = 200, timeout_s: float = 300.0) -> Burst:
    """Publish ``messages`` telemetry messages (every point of a device each) for the devices
    behind ``gateway`` (a gateway no process runs) as fast as the broker acknowledges them
    (``window`` in flight), then wait until ingest has stored every point; the rate is
    stored points over the time from the first publish to the last row."""
    devices = [d for d in site.devices.values() if d.gateway == gateway]
    # one millisecond apart (timestamps travel with millisecond precision), all in the past
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(milliseconds=messages + 60_000)
    session = f"burst-{uuid.uuid4().hex[:6]}"
    total_points = 0
    started = time.monotonic()
    async with MqttClient(url, f"bench-{session}", protocol=protocol,
                          max_inflight=window) as client:
        await client.wait_connected(30)
        pending: set[asyncio.Future[None]] = set()
        for i in range(messages):
            device = devices[i % len(devices)]
            points = _values(device)
            msg = Telemetry(ts=base + timedelta(milliseconds=i), seq=i + 1, session=session,
                            points=points)
            topic = topics.device_topic(TopicKind.TELEMETRY, site.id, gateway, device.id)
            total_points += len(points)
            pending.add(client.publish_nowait(topic, encode(msg), qos=1))
            if len(pending) >= window:
                _done, pending = await asyncio.wait(pending,
                                                    return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
    published_s = time.monotonic() - started
    stored = await _stored(database_url, [d.id for d in devices], base,
                           base + timedelta(milliseconds=messages), total_points,
                           started + timeout_s)
    return Burst(messages, total_points, stored[1] - started, stored[0], published_s)


async def _stored(url: str, devices: list[str], lo: datetime, hi: datetime, expected: int,
                  deadline: float) -> tuple[int, float]:
    """(rows of ``devices`` stored with time in [lo, hi), when the count reached
    ``expected`` or last grew)."""
    last, last_at = -1, time.monotonic()
    sql = ("SELECT count(*) FROM telemetry t JOIN points p ON p.id = t.point_id JOIN devices d"
           " ON d.id = p.device_id WHERE d.name = ANY(%s) AND t.time >= %s AND t.time < %s")
    while True:
        with contextlib.suppress(psycopg.Error, TimeoutError):
            async with await psycopg.AsyncConnection.connect(url, connect_timeout=3) as conn:
                cur = await conn.execute(sql, (devices, lo, hi))
                row = await cur.fetchone()
                n = int(row[0]) if row else 0
                if n != last:
                    last, last_at = n, time.monotonic()
                if n >= expected:
                    return n, last_at
        if time.monotonic() > deadline or time.monotonic() - last_at > 30:
            return max(last, 0), last_at
        await asyncio.sleep(0.2)
