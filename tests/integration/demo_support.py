"""The whole product started as a user starts it, for the end-to-end tests: `facility demo`
as a subprocess against the test broker and database, on a small written site (one building:
two elevators, a pump set over Modbus TCP, a fire panel over BACnet/IP) and a written
scenario, with the demo users' password known. No dispatch file sits beside the site, so
work orders stay unassigned (any technician may take them).

``run_demo`` yields the base URL as soon as the process is started (wait for health with
``eventually``); on exit it stops the demo with SIGINT, prints the tail of its log and fails
the test if it did not stop cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from facility.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e-secret-pw"


def _udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def write_site(tmp_path: Path, site_id: str) -> Path:
    def modbus(name: str, typ: str, profile: str) -> dict[str, Any]:
        return {"id": name, "type": typ, "profile": profile,
                "address": {"protocol": "modbus", "port": free_port()}}

    site = {
        "site": site_id,
        "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw-a", "report_period_s": 5}],
        "buildings": [{"id": "a", "gateway": "gw-a", "devices": [
            modbus("a-elevator-1", "elevator", "elevator"),
            modbus("a-elevator-2", "elevator", "elevator"),
            modbus("a-pumps", "pump_set", "pump_set"),
            {"id": "a-firepanel", "type": "fire_panel", "profile": "firepanel",
             "address": {"protocol": "bacnet", "port": _udp_port(), "device_instance": 3001}},
        ]}],
        "rules": {"entrapment": {"on_delay_s": 2}},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def write_scenario(tmp_path: Path, steps: Sequence[dict[str, Any]]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({"steps": list(steps)}, allow_unicode=True))
    return path


@contextmanager
def run_demo(tmp_path: Path, *, database_url: str, mqtt_url: str, mqtt_protocol: str,
             site_id: str, steps: Sequence[dict[str, Any]]) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "FACILITY_DATABASE_URL": database_url, "FACILITY_MQTT_URL": mqtt_url,
        "FACILITY_MQTT_PROTOCOL": mqtt_protocol, "FACILITY_DEMO_PASSWORD": PASSWORD,
        "HOME": str(tmp_path),
    }
    site = write_site(tmp_path, site_id)
    scenario = write_scenario(tmp_path, steps)
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "demo", "--site", str(site),
         "--scenario", str(scenario), "--port", str(port),
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
        output = (tmp_path / "demo.log").read_text(errors="replace")
        print(output[-20000:])
        assert code == 0, "facility demo did not stop cleanly on SIGINT"


def eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``check`` (from outside the process under test there is nothing to wait on)
    until it returns something true; fail the test with the last answer otherwise."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, AssertionError) as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout_s:.0f} s (last: {last!r})")
