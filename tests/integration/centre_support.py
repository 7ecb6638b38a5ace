"""A database centre for the integration tests: three machines (namespaces) with etcd and
Patroni, and a fourth ("client") running mosquitto, ``facility ingest`` and ``facility
rules`` as real processes that reach the database through the multi-host URL. The test body
runs inside the client machine (``Estate.run``: its own event loop in a thread that has
entered the namespace), so its MQTT client and its queries live there too.

A steady publisher sends numbered telemetry of one lift (QoS 1) and records which messages
the broker acknowledged; every acknowledged message must end up stored once."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from facility import topics
from facility.db.connect import connect
from facility.messages import Telemetry, encode
from facility.mqtt import MqttClient
from facility.topics import TopicKind
from stack.centre.database import DatabaseCluster, centre_description, start_database
from stack.centre.machines import Centre, Machine, skip_reason
from tests.integration.test_rules_service import FREE, ROOT, TRAPPED

T = TypeVar("T")
MQTT_PORT = 1883  # inside the client's own namespace: nothing else can hold it
START_S = 120.0


@dataclass
class Estate:
    centre: Centre
    db: DatabaseCluster
    client: Machine
    site_id: str
    mqtt_url: str
    services: dict[str, Any] = field(default_factory=dict)

    def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run an async body inside the client machine."""
        return self.client.call(lambda: asyncio.run(body()))

    def alive(self, name: str) -> bool:
        proc = self.services[name]
        return bool(proc.poll() is None)

    def lift(self, n: int) -> str:
        return f"{self.site_id}-lift{n}"


def start_estate(tmp_path: Path, site_id: str) -> Estate:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    for tool in ("patroni", "etcd", "mosquitto"):
        if not any((Path(d) / tool).exists() for d in ("/usr/bin", "/usr/sbin")):
            pytest.skip(f"{tool} is not installed (scripts/system-packages test)")
    centre = Centre.create(3, tmp_path / "centre")
    try:
        client = centre.add_machine("client")
        data = Path(tempfile.mkdtemp(prefix="facility-centre-"))
        data.chmod(0o755)  # the database runs as postgres
        db = start_database(centre, centre_description(centre, data / "db", haproxy=[]),
                            timeout_s=START_S)
        estate = Estate(centre, db, client, site_id,
                        f"mqtt://{client.address}:{MQTT_PORT}")
        _start_services(estate, tmp_path)
        return estate
    except BaseException:
        centre.close()
        raise


def _start_services(estate: Estate, tmp_path: Path) -> None:
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {MQTT_PORT} {estate.client.address}\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {tmp_path}/\n")
    estate.services["broker"] = estate.client.start(
        "mosquitto", ["mosquitto", "-c", str(conf)])
    site = write_site(tmp_path, estate.site_id)
    common = ["--site", str(site), "--database-url", estate.db.url(),
              "--mqtt-url", estate.mqtt_url, "--log-level", "INFO"]
    cli = [sys.executable, "-m", "stack.cli"]
    estate.services["ingest"] = estate.client.start(
        "ingest", [*cli, "ingest", *common, "--batch-ms", "50"], cwd=ROOT)
    estate.services["rules"] = estate.client.start(
        "rules", [*cli, "rules", *common, "--procedures", str(ROOT / "procedures")], cwd=ROOT)
    for name in ("ingest", "rules"):  # a message before a subscription would reach no one
        wait_logged(estate.client.log_path(name), f"{name} subscribed to", START_S)


def wait_logged(path: Path, text: str, timeout_s: float) -> None:
    """Poll a service's log (a line is the only sign it is subscribed) until ``text``."""
    deadline = time.monotonic() + timeout_s
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name}: no {text!r} within {timeout_s:.0f} s")
        time.sleep(0.1)


def write_site(tmp_path: Path, site_id: str) -> Path:
    """Two lifts: one per failover case, so each case's entrapment is its own alarm."""
    lifts = [{"id": f"{site_id}-lift{i}", "type": "elevator", "profile": "elevator",
              "address": {"protocol": "modbus", "port": 15021 + i}} for i in (1, 2)]
    raw = {"site": site_id, "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw-a"}],
           "buildings": [{"id": "a", "gateway": "gw-a", "devices": lifts}],
           "rules": {"entrapment": {"on_delay_s": 0.3}}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def close_estate(estate: Estate) -> None:
    estate.db.close()
    estate.centre.close()
    shutil.rmtree(estate.db.description.data_dir.parent, ignore_errors=True)


@contextlib.contextmanager
def estate_for(tmp_path: Path, site_id: str) -> Iterator[Estate]:
    estate = start_estate(tmp_path, site_id)
    try:
        yield estate
    finally:
        close_estate(estate)


class Publisher:
    """Numbered telemetry of one lift, one message every ``period_s``; ``acked`` holds the
    time (``ts``) of each message the broker acknowledged."""

    def __init__(self, client: MqttClient, estate: Estate, device: str,
                 period_s: float = 0.05) -> None:
        self.client, self.estate, self.device, self.period_s = client, estate, device, period_s
        self.points = dict(FREE)
        self.acked: list[datetime] = []
        self.seq = 0
        self.stopped = asyncio.Event()

    def trap(self) -> None:
        self.points = dict(TRAPPED)

    async def run(self) -> None:
        topic = topics.device_topic(TopicKind.TELEMETRY, self.estate.site_id, "gw-a",
                                    self.device)
        base = datetime.now(UTC).replace(microsecond=0)
        while not self.stopped.is_set():
            self.seq += 1
            ts = base + timedelta(milliseconds=10 * self.seq)  # distinct, increasing
            msg = Telemetry(ts=ts, seq=self.seq, session="centre", points=self.points)
            await self.client.publish(topic, encode(msg), qos=1, timeout_s=30)
            self.acked.append(ts)
            await asyncio.sleep(self.period_s)

    async def wait_count(self, n: int, timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.acked) < n:  # noqa: ASYNC110 (a counter: no event to await)
                await asyncio.sleep(0.05)


async def stored_times(url: str, device: str) -> list[datetime]:
    """The times of the lift's car_floor rows (one per stored message)."""
    async with await connect(url) as conn:
        cur = await conn.execute(
            "SELECT t.time FROM telemetry t JOIN points p ON p.id = t.point_id"
            " JOIN devices d ON d.id = p.device_id WHERE d.name = %s AND p.name = 'car_floor'"
            " ORDER BY t.time", (device,))
        return [r[0] for r in await cur.fetchall()]


async def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await connect(url) as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll ``check`` (a database or a counter: nothing to await) until true."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s:.0f} s: {what}") from None
