"""Helpers for the gateway integration tests: a site file written per test, and a subscriber
that collects contract messages from the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from facility import messages, topics
from facility.mqtt import MqttClient
from facility.site import Site, load_site

ROOT = Path(__file__).resolve().parents[2]
M = TypeVar("M", bound=BaseModel)


def write_site(tmp_path: Path, site_id: str, devices_yaml: str, *, report_period_s: float = 30,
               offline_after: int = 2, profiles_dir: Path | None = None,
               gateway_options: str = "") -> Site:
    path = tmp_path / "site.yaml"
    profiles_dir = profiles_dir or ROOT / "profiles"
    path.write_text(
        f"site: {site_id}\n"
        f"profiles_dir: {profiles_dir}\n"
        f"gateways: [{{id: gw-t, report_period_s: {report_period_s}, "
        f"offline_after_failures: {offline_after}{gateway_options}}}]\n"
        "buildings:\n"
        "  - id: a\n"
        "    gateway: gw-t\n"
        "    devices:\n" + devices_yaml,
        encoding="utf-8",
    )
    return load_site(path, profiles_dir=profiles_dir)


async def until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait for a condition on counters or files, which offer nothing to await."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polled state, no event to await
            await asyncio.sleep(0.05)


class Inbox:
    """Every message under the site's prefix, parsed on demand, awaited by predicate."""

    def __init__(self, client: MqttClient, site_id: str) -> None:
        self.client = client
        self.site_id = site_id
        self.received: list[tuple[str, bytes, bool]] = []
        self._new = asyncio.Condition()

    async def collect(self) -> None:
        async for m in self.client.messages():
            async with self._new:
                self.received.append((m.topic, m.payload, m.retain))
                self._new.notify_all()

    async def wait_for(
        self, model: type[M], kind: topics.TopicKind, device: str | None,
        predicate: Callable[[M], bool] = lambda _m: True, timeout_s: float = 10.0,
    ) -> M:
        seen = 0
        async with asyncio.timeout(timeout_s), self._new:
            while True:
                for topic, payload, _retain in self.received[seen:]:
                    t = topics.parse(topic)
                    if t.kind is kind and t.device == device:
                        msg = messages.parse(model, payload)
                        if predicate(msg):
                            return msg
                seen = len(self.received)
                await self._new.wait()

    def all_of(self, model: type[M], kind: topics.TopicKind, device: str | None) -> list[M]:
        out = []
        for topic, payload, _retain in self.received:
            t = topics.parse(topic)
            if t.kind is kind and t.device == device:
                out.append(messages.parse(model, payload))
        return out
