"""Issue 17: ingest and rules stop within their bound at SIGTERM or SIGINT while a flood of
QoS 1 telemetry comes in (the load of their benchmarks: bench/ingest.py publishes 12-point
elevator messages as fast as the broker takes them, bench/rules.py 13-point switchgear
snapshots of 200 devices), and lose nothing: each is stopped and started again several
times during the flood, then left to finish. Ingest must have stored every row exactly
once (it commits or leaves unacknowledged what it holds); rules must have handled every
message at least once (it finishes the message in hand and acknowledges only what it
handled). Each stop exits 0 (``facility.runner`` exits non-zero past its bound) and no log
has an error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import psycopg
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from facility import topics
from facility.ports import free_port
from tests.integration.chain_support import ROOT, poll
from tests.integration.stop_support import (
    Stopped,
    bad_lines,
    private_broker,
    report,
    start,
    stop_timed,
    wait_log,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SITE, GATEWAY = "stops", "gw-flood"
STOPS = 2  # and the first run's: each a stop under the flood; then the last run's
RUN_MESSAGES = 500  # each run consumes at least this many (its own counter) before its stop
COUNTER = {"ingest": "ingest_messages_received_total", "rules": "rules_messages_total"}
Message = tuple[str, bytes]


def _site(tmp_path: Path, devices: int, device_type: str) -> Path:
    data = {"site": SITE, "profiles_dir": str(ROOT / "profiles"), "gateways": [{"id": GATEWAY}],
            "buildings": [{"id": "a", "gateway": GATEWAY, "devices": [
                {"id": f"d{k:03d}", "type": device_type, "profile": device_type,
                 "address": {"protocol": "modbus", "port": 20000 + k}}
                for k in range(devices)]}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _telemetry(n: int, devices: int,
               points: Callable[[int], dict[str, object]]) -> list[Message]:
    """n messages round robin over the devices, one second apart per device (a row key of
    its own for every point), seq increasing per device."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    out = []
    for i in range(n):
        k, dev = divmod(i, devices)
        ts = (base + timedelta(seconds=k)).isoformat().replace("+00:00", "Z")
        pts = points(k)
        out.append((topics.device_topic(topics.TopicKind.TELEMETRY, SITE, GATEWAY,
                                        f"d{dev:03d}"),
                    orjson.dumps({"ts": ts, "seq": k + 1, "session": "flood", "points": pts})))
    return out


def _elevator(k: int) -> dict[str, object]:
    return {"moving": k % 3 != 0, "door_closed": k % 3 != 1, "door_zone": k % 5 == 0,
            "alarm_button": False, "car_floor": k % 20 - 2, "direction": k % 3,
            "passengers": k % 9, "load_kg": 75 * (k % 9), "service_mode": 0,
            "fault_code": 0, "speed_mps": (k % 7) * 0.25, "run_count": 100_000 + k}


def _switchgear(k: int) -> dict[str, object]:
    v = 228.0 + (k % 7) * 0.7
    return {"voltage_l1": v, "voltage_l2": v + 0.3, "voltage_l3": v - 0.2,
            "current_l1": 120.0 + k % 5, "current_l2": 121.0, "current_l3": 119.0,
            "active_power_kw": 80.0 + k % 3, "power_factor": 0.93, "energy_kwh": 500000 + k,
            "transformer_temp_c": 50.0, "incoming_breaker_closed": True,
            "feeder_1_breaker_closed": True, "feeder_2_breaker_closed": True}


@contextmanager
def flood(port: int, msgs: Sequence[Message]) -> Iterator[threading.Event]:
    """Publish every message with QoS 1 as fast as the broker takes them, in a thread; the
    event is set once the broker has acknowledged the last one."""
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"stop-flood-{port}",
                         protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()

    def run() -> None:
        info = None
        for i, (topic, payload) in enumerate(msgs):
            info = client.publish(topic, payload, qos=1)
            if i % 1000 == 999:
                info.wait_for_publish(60)
        if info is not None:
            info.wait_for_publish(120)
        done.set()

    thread = threading.Thread(target=run, name="flood", daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(180)
        client.loop_stop()
        client.disconnect()


def _run(name: str, args: list[str], log: Path, env: dict[str, str],
         tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A run of the service with a metrics port, once it says it is ready."""
    port = free_port()
    proc = start(name, [*args, "--metrics-port", str(port)], log, env, tmp_path)
    wait_log(proc, log, f"{name} subscribed", 90)
    return proc, port


def _consumed(name: str, port: int) -> None:
    """Until the run has handled RUN_MESSAGES messages of the flood (its own counter)."""
    poll(lambda: _scrape(port, COUNTER[name]) >= RUN_MESSAGES, 90,
         f"{RUN_MESSAGES} messages consumed by {name}", interval_s=0.05)


def _cycles(name: str, args: list[str], tmp_path: Path,
            env: dict[str, str], stops: int) -> tuple[list[Stopped], list[Path]]:
    stopped: list[Stopped] = []
    logs: list[Path] = []
    for i in range(stops):
        log = tmp_path / f"{name}-{i:02d}.log"
        logs.append(log)
        proc, port = _run(name, args, log, env, tmp_path)
        _consumed(name, port)
        stopped.append(stop_timed(name, proc, signal.SIGTERM if i % 2 == 0 else signal.SIGINT))
    return stopped, logs


def _env(tmp_path: Path, database_url: str, mqtt_url: str) -> dict[str, str]:
    return os.environ | {"FACILITY_DATABASE_URL": database_url, "FACILITY_MQTT_URL": mqtt_url,
                         "FACILITY_MQTT_PROTOCOL": "5", "FACILITY_LOG_LEVEL": "INFO",
                         "HOME": str(tmp_path)}


def _rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


def _coverage(database_url: str) -> tuple[int, int, int]:
    """Rows, points and distinct times: with the key (point_id, time), rows = points x times
    means every point of every message is there."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT point_id), count(DISTINCT time)"
                           " FROM telemetry").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


WRITTEN = re.compile(r"ingest stopped: messages in (\d+), rows written (\d+)")


def _written(logs: list[Path]) -> tuple[int, int]:
    """Messages taken and rows written, summed over the runs' closing lines."""
    found = [tuple(map(int, m)) for log in logs
             for m in WRITTEN.findall(log.read_text(errors="replace"))]
    assert len(found) == len(logs), f"{len(found)} closing lines in {len(logs)} logs"
    return sum(f[0] for f in found), sum(f[1] for f in found)


def test_ingest_stops_in_bound_under_a_flood_and_stores_every_row_once(
    tmp_path: Path, database_url: str,
) -> None:
    devices, messages = 100, 30_000
    site = _site(tmp_path, devices, "elevator")
    msgs = _telemetry(messages, devices, _elevator)
    args = ["ingest", "--site", str(site)]
    with private_broker(tmp_path / "broker") as broker:
        env = _env(tmp_path, database_url, broker.url)
        first, port = _run("ingest", args, tmp_path / "ingest-first.log", env, tmp_path)
        with flood(broker.port, msgs) as published:
            _consumed("ingest", port)
            stops = [stop_timed("ingest", first, signal.SIGINT)]
            more, logs = _cycles("ingest", args, tmp_path, env, STOPS)
            stops += more
            last_log = tmp_path / "ingest-last.log"
            last, port = _run("ingest", args, last_log, env, tmp_path)
            try:
                poll(published.is_set, 180, "the flood published")
                poll(lambda: _rows(database_url) >= messages * 12, 180, "every row stored")
                stops.append(stop_timed("ingest", last, signal.SIGTERM))
            finally:
                if last.poll() is None:
                    last.kill()
    print(report(stops))
    every = [tmp_path / "ingest-first.log", *logs, last_log]
    assert _coverage(database_url) == (messages * 12, devices * 12, messages // devices)
    taken, written = _written(every)
    assert written == messages * 12, (taken, written)  # each row written by one run, once
    assert taken >= messages
    for log in every:
        assert not bad_lines(log), (log.name, bad_lines(log)[:5])
    assert all(s.status == 0 for s in stops), stops


HANDLED = re.compile(r"stopped: (\d+) messages handled")


def test_rules_stop_in_bound_under_a_flood_and_handle_every_message(
    tmp_path: Path, database_url: str,
) -> None:
    devices, messages = 200, 30_000
    site = _site(tmp_path, devices, "switchgear")
    msgs = _telemetry(messages, devices, _switchgear)
    args = ["rules", "--site", str(site), "--procedures", str(ROOT / "procedures")]
    with private_broker(tmp_path / "broker") as broker:
        env = _env(tmp_path, database_url, broker.url)
        first, port = _run("rules", args, tmp_path / "rules-first.log", env, tmp_path)
        with flood(broker.port, msgs) as published:
            _consumed("rules", port)
            stops = [stop_timed("rules", first, signal.SIGINT)]
            more, logs = _cycles("rules", args, tmp_path, env, STOPS)
            stops += more
            poll(published.is_set, 180, "the flood published")
        last_log = tmp_path / "rules-last.log"
        logs += [tmp_path / "rules-first.log", last_log]
        last, port = _run("rules", args, last_log, env, tmp_path)
        try:
            before = _handled(logs)
            poll(lambda: before + _scrape(port, "rules_messages_total") >= messages, 180,
                 "every message handled")
            stops.append(stop_timed("rules", last, signal.SIGTERM))
        finally:
            if last.poll() is None:
                last.kill()
    print(report(stops))
    total = _handled(logs)
    assert total >= messages, f"{total} of {messages} handled"
    for log in logs:
        assert not bad_lines(log), (log.name, bad_lines(log)[:5])
    assert all(s.status == 0 for s in stops), stops


def _handled(logs: list[Path]) -> int:
    return sum(int(n) for log in logs if log.exists()
               for n in HANDLED.findall(log.read_text(errors="replace")))


def _scrape(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))
