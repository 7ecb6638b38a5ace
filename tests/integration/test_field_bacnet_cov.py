"""A fire panel followed by COV (the default settings) on a simulated building LAN (network
namespaces), killed with SIGKILL once its values flow: no value is published as good after
the poll that would have read it, and the panel is offline within
``offline_after_failures`` polls and their timeouts, as a polled panel is. Everything runs
as processes: the simulators, mosquitto, the gateway, mosquitto_sub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from facility.site import GatewayConfig
from tests.integration.field_support import (
    messages,
    open_lab,
    panel,
    start_broker,
    start_gateway,
    start_simulators,
    status_of,
    subscribe,
    telemetry_of,
    wait_for,
    write_site,
)
from tests.integration.netns_support import Lab, Netns

pytestmark = pytest.mark.timeout(240)
METRICS_PORT = 18831  # inside the gateway's namespace: its own loopback
POLL_S = TIMEOUT_S = 1.0  # panel(): the device defaults
DEFAULTS = GatewayConfig(id="defaults")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from open_lab(tmp_path)


def cov_notifications(ns: Netns) -> float:
    def scrape() -> float:
        text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).text
        line = next(x for x in text.splitlines()
                    if x.startswith("gateway_cov_notifications_total"))
        return float(line.rsplit(" ", 1)[1])

    return ns.call(scrape)


def when(payload: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(payload["ts"]).replace("Z", "+00:00"))


def test_a_cov_panel_killed_is_offline_as_fast_as_a_polled_one_and_never_stale_good(
    lab: Lab, tmp_path: Path, site_id: str,
) -> None:
    gw, lan = lab.namespace("gw"), lab.namespace("lan")
    lab.link(gw, "10.213.1.1/24", lan, "10.213.1.10/24")
    device = panel("p-cov", 1001, host="10.213.1.10")
    assert (device["poll_interval_s"], device["timeout_s"]) == (POLL_S, TIMEOUT_S)
    sim = write_site(tmp_path / "sim.yaml", site_id, [device])
    offline_after = DEFAULTS.offline_after_failures
    gws = write_site(tmp_path / "gw.yaml", site_id, [device], gateway={
        "bacnet": {"address": "10.213.1.1/24"}, "metrics_port": METRICS_PORT,
        "offline_after_failures": offline_after})  # COV and integrity poll: the defaults
    sim_log = start_simulators(lab, lan, sim)
    start_broker(lab, gw)
    sub = subscribe(lab, gw, site_id)
    gw_log = start_gateway(lab, gw, gws)
    logs = [gw_log, sim_log]
    wait_for(sub, status_of("p-cov", "online"), logs=logs)
    wait_for(sub, telemetry_of("p-cov"), logs=logs)
    points = 13  # the firepanel profile's objects, each notified once when subscribed
    deadline = time.monotonic() + 60
    while cov_notifications(gw) < points:
        assert time.monotonic() < deadline, "COV never followed the panel"
        time.sleep(0.2)
    # good telemetry from notified values flows (a full snapshot every report period)
    wait_for(sub, lambda t, p: telemetry_of("p-cov")(t, p) and len(p["points"]) == points
             and set(p["quality"].values()) == {"good"}, logs=logs)

    proc = next(p for name, p in lab.processes if name == "simulators")
    proc.kill()  # SIGKILL: no goodbye from the panel
    killed = datetime.now(UTC)
    proc.wait(10)
    offline = wait_for(sub, status_of("p-cov", "offline"), logs=logs)

    seconds = (when(offline) - killed).total_seconds()
    print(f"kill to offline: {seconds:.1f} s (offline_after_failures {offline_after}, "
          f"poll {POLL_S:g} s, timeout {TIMEOUT_S:g} s, COV lifetime "
          f"{DEFAULTS.cov_lifetime_s} s, integrity poll {DEFAULTS.integrity_poll_s:g} s)")
    # each failed poll takes its timeout, then waits for the next tick; one poll interval
    # of slack for where in its tick the kill fell
    assert seconds <= offline_after * (POLL_S + TIMEOUT_S) + POLL_S, offline
    assert "timeout after" in str(offline["reason"])
    for topic, payload in messages(sub):
        if not topic.endswith("/p-cov/telemetry"):
            continue
        good = [n for n, q in payload["quality"].items() if q == "good"]
        late_s = (when(payload) - killed).total_seconds()
        assert not good or late_s <= POLL_S, (
            f"{good} published good {late_s:.1f} s after the panel died: {payload}")
