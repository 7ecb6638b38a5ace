"""Issue 17: the gateway stops within its bound at every SIGTERM or SIGINT under load, and
nothing it published is lost across twenty stops and starts.

Two hundred simulated Modbus devices polled every second through a real mosquitto; the
gateway is started and stopped as a service manager does, twenty times in a row, with
SIGTERM and SIGINT in turn. At some stops the broker is paused first (SIGSTOP: it takes
no packet and acknowledges none), so that the gateway waits its bounded time for PUBACKs
and spools the rest to disk; the next start must resume that queue. Every telemetry
message is recorded (QoS 1, persistent session); at the end every ``seq`` of every
session, up to the last one the gateway says it assigned, was received or is still in the
disk queue. Each stop exits 0 (``facility.runner`` exits non-zero past its bound) and no
gateway log has an error."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from facility.site import load_site
from gateway.buffer import MessageStore
from gateway.service import buffer_path
from stack.embedded.broker import Broker
from tests.integration.chain_support import poll
from tests.integration.stop_support import (
    Stopped,
    bad_lines,
    load_simulators,
    pause,
    private_broker,
    recorded,
    recorder,
    report,
    resume,
    start,
    stop_timed,
    wait_log,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
DEVICES = 200
CYCLES = 20
PAUSED = {5, 13}  # stops that meet a broker which answers nothing
RUN_S = 1.0  # polling between the gateway's "online" and its stop
OFFLINE = re.compile(r"offline \(session (\w+), last seq (\d+)\)")


def test_twenty_stops_under_load_each_in_bound_and_nothing_lost(tmp_path: Path) -> None:
    with private_broker(tmp_path / "broker") as broker:
        env = {**os.environ, "FACILITY_MQTT_URL": broker.url, "FACILITY_LOG_LEVEL": "INFO",
               "HOME": str(tmp_path)}
        with load_simulators(tmp_path, DEVICES, env) as site_file, \
                recorder(tmp_path, broker.port, "facility/v1/+/+/+/telemetry") as out:
            stops, logs = _cycles(tmp_path, site_file, broker, env)
            last_seq = _last_seqs(logs)
            queued = _queued(site_file, tmp_path / "state")
            print(report(stops))

            def all_received() -> list[str]:
                missing = _missing(last_seq, recorded(out), queued)
                assert not missing, missing[:10]
                return ["ok"]

            poll(all_received, 60, "every seq received or queued")
    for log in logs:
        assert not bad_lines(log), (log.name, bad_lines(log)[:5])
    assert all(s.status == 0 for s in stops), [s for s in stops if s.status != 0]
    assert len(last_seq) == CYCLES and all(n > 0 for n in last_seq.values())
    for i in PAUSED:  # the stop at a paused broker spooled; the next start resumed it
        assert "resuming" in logs[i + 1].read_text(), logs[i + 1].name


def _cycles(tmp_path: Path, site_file: Path, broker: Broker,
            env: dict[str, str]) -> tuple[list[Stopped], list[Path]]:
    stops: list[Stopped] = []
    logs: list[Path] = []
    args = ["gateway", "--site", str(site_file), "--gateway", "gw-load-1",
            "--state-dir", str(tmp_path / "state")]
    for i in range(CYCLES):
        log = tmp_path / f"gateway-{i:02d}.log"
        logs.append(log)
        proc = start("gateway", args, log, env, tmp_path)
        wait_log(proc, log, "online (session", 90)
        if i in PAUSED:  # the first readings (births, snapshots: staggered over the first
            pause(broker)  # poll interval) then await PUBACKs that cannot come
        time.sleep(RUN_S)
        try:
            sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
            stops.append(stop_timed("gateway", proc, sig))
        finally:
            resume(broker)
    return stops, logs


def _last_seqs(logs: list[Path]) -> dict[str, int]:
    seqs: dict[str, int] = {}
    for log in logs:
        for session, seq in OFFLINE.findall(log.read_text(errors="replace")):
            seqs[session] = int(seq)
    return seqs


def _queued(site_file: Path, state_dir: Path) -> list[dict[str, object]]:
    site = load_site(site_file)
    path = buffer_path(site, site.gateway("gw-load-1"), state_dir)
    if not path.exists():
        return []
    store = MessageStore(path, 10**9)
    try:
        return [json.loads(r.message.payload) for r in store.oldest(10**9)
                if r.message.telemetry]
    finally:
        store.close()


def _missing(last_seq: dict[str, int], received: list[dict[str, object]],
             queued: list[dict[str, object]]) -> list[str]:
    seen: dict[str, set[int]] = defaultdict(set)
    for m in [*received, *queued]:
        seen[str(m["session"])].add(int(str(m["seq"])))
    return [f"{session[:8]}: {len(set(range(1, last + 1)) - seen[session])} of {last} missing"
            for session, last in last_seq.items()
            if not set(range(1, last + 1)) <= seen[session]]
