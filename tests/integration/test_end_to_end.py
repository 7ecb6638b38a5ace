"""The whole spine, as a user starts it: `facility demo` against the test broker and
database, a scenario with an entrapment and a fire alarm, and the API as the only window.

Simulators (real Modbus TCP and BACnet/IP) -> gateway -> MQTT -> ingest and rules ->
PostgreSQL -> API. Asserts that both faults become work orders with their procedures'
steps, that a repeat does not duplicate them, and that the alarms return to normal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from facility.embedded.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e-secret-pw"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def _site(tmp_path: Path, site_id: str) -> Path:
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


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({"steps": [
        {"at": "8s", "device": "a-elevator-2", "fault": "entrapment", "duration": "40s"},
        {"at": "8s", "device": "a-firepanel", "fault": "fire_alarm", "zone": 3,
         "duration": "25s"},
    ]}))
    return path


@pytest.fixture
def demo(tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str,
         site_id: str) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "FACILITY_DATABASE_URL": database_url, "FACILITY_MQTT_URL": mqtt_url,
        "FACILITY_MQTT_PROTOCOL": mqtt_protocol, "FACILITY_DEMO_PASSWORD": PASSWORD,
        "HOME": str(tmp_path),
    }
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "facility.cli", "demo", "--site", str(_site(tmp_path, site_id)),
         "--scenario", str(_scenario(tmp_path)), "--port", str(port),
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


def _eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
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


def test_faults_become_work_orders_and_alarms_return_to_normal(demo: str) -> None:
    client = httpx.Client(base_url=demo, timeout=10)
    _eventually(lambda: client.get("/api/v1/health").status_code == 200, 90, "API health")
    assert client.get("/api/v1/alarms").status_code == 401
    token = client.post("/api/v1/auth/token",
                        data={"username": "operator", "password": PASSWORD}).json()
    client.headers["Authorization"] = f"Bearer {token['access_token']}"

    def devices_online() -> bool:
        devices = {d["name"]: d for d in client.get("/api/v1/devices").json()}
        ok = devices["a-elevator-1"]["status"] == "online"
        ok = ok and devices["a-firepanel"]["status"] == "online"
        return ok and "car_floor" in devices["a-elevator-1"]["values"]

    _eventually(devices_online, 60, "devices online with latest values")

    def orders_by_procedure() -> dict[str, dict[str, Any]]:
        orders = client.get("/api/v1/work-orders").json()
        found = {o["procedure_id"]: o for o in orders}
        assert {"elevator_entrapment", "fire_alarm_signal"} <= set(found), found.keys()
        return found

    orders = _eventually(orders_by_procedure, 90, "both work orders")
    entrapment = orders["elevator_entrapment"]
    fire = orders["fire_alarm_signal"]
    assert entrapment["source"] == "a-elevator-2"
    assert fire["source"] == "a-firepanel"

    detail = client.get(f"/api/v1/work-orders/{entrapment['id']}").json()
    assert len(detail["steps"]) >= 4
    assert any("困" in s["action"] for s in detail["steps"])
    fire_detail = client.get(f"/api/v1/work-orders/{fire['id']}").json()
    assert any("消防" in s["action"] or "火" in s["action"] for s in fire_detail["steps"])

    alarms = {a["type"]: a for a in client.get("/api/v1/alarms").json()}
    assert alarms["entrapment"]["active"] is True
    ack = client.post(f"/api/v1/alarms/{alarms['entrapment']['id']}/acknowledge")
    assert ack.status_code == 200, ack.text

    def returned_to_normal() -> dict[str, dict[str, Any]]:
        now = {a["type"]: a for a in client.get("/api/v1/alarms").json()}
        assert now["entrapment"]["state"] == "normal", now["entrapment"]
        assert now["fire_alarm"]["active"] is False, now["fire_alarm"]
        return now

    final = _eventually(returned_to_normal, 90, "alarms returning to normal")
    assert final["fire_alarm"]["state"] == "rtn_unack"

    # A fault that lasted tens of seconds opened one order each, never a duplicate.
    all_orders = client.get("/api/v1/work-orders").json()
    assert sum(o["procedure_id"] == "elevator_entrapment" for o in all_orders) == 1
    assert sum(o["procedure_id"] == "fire_alarm_signal" for o in all_orders) == 1
