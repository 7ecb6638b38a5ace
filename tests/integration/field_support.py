"""Helpers of the field-network tests: site files for the simulators and for the gateway,
a broker and a subscriber inside a namespace (each namespace has its own loopback), and
waiting for contract messages in the subscriber's output."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.integration.netns_support import Lab, Netns, lab_or_skip

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "stack.cli"]
BROKER_PORT = 18830  # inside the gateway's namespace: its own loopback, nothing else there


def open_lab(tmp_path: Path) -> Iterator[Lab]:
    """A simulated building network, removed at the end (skipped when not root): the body
    of each test module's ``lab`` fixture."""
    lab = lab_or_skip(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def write_site(path: Path, site_id: str, devices: list[dict[str, Any]],
               gateway: dict[str, Any] | None = None) -> Path:
    raw = {"site": site_id, "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw-a", "report_period_s": 5, "offline_after_failures": 2,
                         **(gateway or {})}],
           "buildings": [{"id": "a", "gateway": "gw-a", "devices": devices}]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def panel(device_id: str, instance: int, **address: Any) -> dict[str, Any]:
    return {"id": device_id, "type": "fire_panel", "profile": "firepanel",
            "poll_interval_s": 1, "timeout_s": 1,
            "address": {"protocol": "bacnet", "device_instance": instance, **address}}


def start_broker(lab: Lab, ns: Netns) -> int:
    conf = lab.work_dir / f"mosquitto-{ns.name}.conf"
    conf.write_text(f"listener {BROKER_PORT} 127.0.0.1\nallow_anonymous true\nuser root\n",
                    encoding="utf-8")
    lab.spawn(ns, f"mosquitto-{ns.name}", ["mosquitto", "-c", str(conf)])
    assert ns.wait_tcp("127.0.0.1", BROKER_PORT), "mosquitto did not listen in the namespace"
    return BROKER_PORT


def subscribe(lab: Lab, ns: Netns, site_id: str) -> Path:
    return lab.spawn(ns, f"sub-{ns.name}", ["mosquitto_sub", "-h", "127.0.0.1", "-p",
                                            str(BROKER_PORT), "-V", "5", "-v",
                                            "-t", f"facility/v1/{site_id}/#"])


def start_gateway(lab: Lab, ns: Netns, site: Path, name: str = "gateway") -> Path:
    return lab.spawn(ns, name, [*CLI, "gateway", "--gateway", "gw-a", "--site", str(site),
                                "--mqtt-url", f"mqtt://127.0.0.1:{BROKER_PORT}",
                                "--state-dir", str(lab.work_dir / f"state-{name}")])


def start_simulators(lab: Lab, ns: Netns, site: Path, name: str = "simulators") -> Path:
    return lab.spawn(ns, name, [*CLI, "simulate", "--site", str(site)])


def messages(log: Path) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every complete line mosquitto_sub printed."""
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        topic, _, payload = line.partition(" ")
        try:
            out.append((topic, json.loads(payload)))
        except ValueError:
            continue
    return out


def wait_for(log: Path, predicate: Callable[[str, dict[str, Any]], bool],
             timeout_s: float = 60.0, *, logs: Sequence[Path] = ()) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for topic, payload in messages(log):
            if predicate(topic, payload):
                return payload
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace")
                                                      .splitlines()[-30:]) for p in logs)
    raise AssertionError(f"no such message within {timeout_s:.0f} s\n{tails}")


def wait_log(log: Path, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{log.name} never said {text!r}:\n{log.read_text()[-3000:]}")


def telemetry_of(device: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, p: topic.endswith(f"/{device}/telemetry") and bool(p.get("points"))


def status_of(device: str, state: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, p: topic.endswith(f"/{device}/status") and p.get("state") == state
