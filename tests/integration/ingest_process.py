"""Ingest as a separate process (``python -m stack.cli ingest``) for the fault tests:
started with a metrics port, scraped, killed or stopped by pid; and a QoS 1 publisher of
numbered telemetry messages."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facility.mqtt import MqttClient
from facility.ports import free_port
from tests.integration.ingest_support import telemetry, topic

ROOT = Path(__file__).resolve().parents[2]
POINTS = {"car_floor": 1, "moving": True, "passengers": 2, "load_kg": 150.5}


@dataclass
class IngestProcess:
    site_file: Path
    database_url: str
    mqtt_url: str
    log_path: Path
    instance: str = "one"
    extra: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stack.cli", "ingest", "--site", str(self.site_file),
                 "--database-url", self.database_url, "--mqtt-url", self.mqtt_url,
                 "--metrics-port", str(self.port), "--instance", self.instance,
                 "--batch-ms", "50", "--batch-rows", "2000", *self.extra],
                cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until the metrics endpoint answers and the log says subscribed."""
        async with asyncio.timeout(timeout_s):
            while "ingest subscribed" not in self.log_path.read_text(errors="replace") \
                    or not await self.try_scrape():
                assert self.proc is not None and self.proc.poll() is None, self.log()
                await asyncio.sleep(0.1)

    async def try_scrape(self) -> dict[str, float]:
        try:
            return await asyncio.to_thread(self.scrape)
        except OSError:
            return {}

    def scrape(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for m in re.finditer(r"^(ingest_\w+)(\{[^}]*\})? (\S+)$", text, re.M):
            reason = re.search(r'reason="([^"]+)"', m.group(2) or "")
            out[m.group(1) + (f"[{reason.group(1)}]" if reason else "")] = float(m.group(3))
        return out

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


async def publish_numbered(client: MqttClient, site_id: str, first: int, n: int,
                           window: int = 200) -> None:
    """Messages ``first`` .. ``first + n - 1``: ts = k/10 s after BASE, seq = k, 4 points."""
    pending: list[asyncio.Future[None]] = []
    for k in range(first, first + n):
        pending.append(client.publish_nowait(topic(site_id, "telemetry"),
                                              telemetry(k / 10, POINTS, seq=k)))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


def since(t0: float) -> float:
    return time.monotonic() - t0
