"""Helpers for the ingest integration tests: a small site file, ingest running as a task,
a plain publisher, and polling the database until a condition holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import yaml

from facility.mqtt import MqttClient
from facility.site import Site, load_site
from ingest.counters import Counters
from ingest.service import run_ingest

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
T = TypeVar("T")


def write_site(tmp_path: Path, site_id: str) -> Site:
    data = {
        "site": site_id,
        "profiles_dir": str(PROFILES),
        "gateways": [{"id": "gw-a"}, {"id": "gw-b"}],
        "buildings": [
            {"id": "a", "gateway": "gw-a", "devices": [
                {"id": "a-elevator-1", "type": "elevator", "profile": "elevator",
                 "address": {"protocol": "modbus", "port": 15021}}]},
            {"id": "b", "gateway": "gw-b", "devices": [
                {"id": "b-elevator-1", "type": "elevator", "profile": "elevator",
                 "address": {"protocol": "modbus", "port": 15031}}]},
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_site(path, profiles_dir=PROFILES)


def ts(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def telemetry(seconds: float, points: dict[str, Any], **extra: Any) -> bytes:
    body = {"ts": ts(seconds), "seq": int(seconds), "session": "sess-1", "points": points}
    return json.dumps(body | extra).encode()


def topic(site_id: str, kind: str, device: str = "a-elevator-1", gateway: str = "gw-a") -> str:
    return f"facility/v1/{site_id}/{gateway}/{device}/{kind}"


@contextlib.asynccontextmanager
async def running_ingest(
    site: Site, database_url: str, mqtt_url: str, mqtt_protocol: str, **kwargs: Any
) -> AsyncIterator[Counters]:
    """Ingest running in a task until the block ends; yields its counters."""
    counters = Counters()
    ready = asyncio.Event()
    task = asyncio.create_task(run_ingest(
        site, database_url, mqtt_url, mqtt_protocol=mqtt_protocol, batch_ms=30,
        ready=ready, counters=counters, **kwargs))
    waiter = asyncio.ensure_future(ready.wait())
    try:
        async with asyncio.timeout(10):
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped ingest
        yield counters
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def publisher(mqtt_url: str, mqtt_protocol: str, name: str) -> AsyncIterator[MqttClient]:
    async with MqttClient(mqtt_url, name, protocol=mqtt_protocol) as client:
        await client.wait_connected(5)
        yield client


async def eventually(
    database_url: str, probe: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    until: Callable[[T], bool], timeout_s: float = 5.0,
) -> T:
    """Run ``probe`` until ``until`` holds on its result; the last result otherwise fails."""
    value: Any = None
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    value = await probe(conn)
                    if until(value):
                        return value
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"condition not met within {timeout_s} s; last: {value!r}") \
                from None


def rows(sql: str, *params: Any) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[list[Any]]]:
    async def probe(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()
    return probe


async def query(
    database_url: str, probe: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
) -> T:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await probe(conn)
