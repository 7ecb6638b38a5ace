"""An RTU line on the simulated building network: the serial device server of the pump room
(the simulators' RTU-over-TCP line, 4 units of which 3 are served) on the LAN namespace,
the gateway with its broker in another; the dead unit goes offline alone, and when the
device server drops its connection (restarted), every unit comes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.field_support import (
    ROOT,
    open_lab,
    start_broker,
    start_gateway,
    start_simulators,
    status_of,
    subscribe,
    telemetry_of,
    wait_for,
    wait_log,
)
from tests.integration.netns_support import Lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from open_lab(tmp_path)


LINE = {"id": "pumps-moxa", "server": "10.213.1.40:4001", "baudrate": 19200, "timeout_s": 0.3}


def rtu_site(path: Path, site_id: str, units: list[int]) -> Path:
    devices: list[dict[str, Any]] = [
        {"id": f"sg-{u}", "type": "switchgear", "profile": "switchgear", "poll_interval_s": 1,
         "timeout_s": 0.3, "address": {"protocol": "modbus-rtu", "line": LINE["id"], "unit": u}}
        for u in units]
    raw = {"site": site_id, "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw-a", "offline_after_failures": 2, "lines": [LINE]}],
           "buildings": [{"id": "a", "gateway": "gw-a", "devices": devices}]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_rtu_line_behind_a_serial_device_server_on_the_lan(
    lab: Lab, tmp_path: Path, site_id: str,
) -> None:
    gw, lan = lab.namespace("gw"), lab.namespace("lan")
    lab.link(gw, "10.213.1.1/24", lan, "10.213.1.40/24")
    served = rtu_site(tmp_path / "sim.yaml", site_id, [1, 2, 3])
    polled = rtu_site(tmp_path / "gw.yaml", site_id, [1, 2, 3, 4])
    sim_log = start_simulators(lab, lan, served)
    wait_log(sim_log, "simulated RTU line pumps-moxa on 10.213.1.40:4001")
    start_broker(lab, gw)
    sub = subscribe(lab, gw, site_id)
    gw_log = start_gateway(lab, gw, polled)
    logs = [gw_log, sim_log]
    for unit in (1, 2, 3):
        wait_for(sub, telemetry_of(f"sg-{unit}"), logs=logs)
    dead = wait_for(sub, status_of("sg-4", "offline"), logs=logs)
    assert dead["reason"] == "timeout after 2 tries"
    lab.stop("simulators")  # the device server goes away with its connection
    for unit in (1, 2, 3):
        wait_for(sub, status_of(f"sg-{unit}", "offline"), logs=logs)
    start_simulators(lab, lan, served, name="simulators-again")
    for unit in (1, 2, 3):
        wait_for(sub, lambda topic, p, u=unit: topic.endswith(f"/sg-{u}/status")
                 and "recovered" in p.get("reason", ""), timeout_s=90, logs=logs)
    assert "RTU line pumps-moxa: 10.213.1.40:4001 open again" in gw_log.read_text()
