"""Stop benchmark (issue 17): how long each service takes from SIGTERM/SIGINT to exit, at
load, as a service manager sees it. A private mosquitto and PostgreSQL on 127.0.0.1 (free
ports, stopped by pid at the end); every service runs as its own process
(``python -m stack.cli ...``), as an operator starts it.

- simulate: ``facility simulate --load N`` (N Modbus devices, 50 points each), stopped at
  the end;
- gateway: polls those N devices every second; started and stopped ``RUNS`` times, SIGTERM
  and SIGINT in turn, after ``RUN_S`` of polling;
- api: with a live stream (SSE) open from a client, stopped ``RUNS`` times.

Ingest and rules are measured by their stop tests under their benchmarks' loads
(tests/integration/test_stops_services.py prints the slowest stop with ``-s``).
Usage: .venv/bin/python bench/stops.py [N] (default 2000). Ends with one ``RESULT`` line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facility.db.migrate import migrate  # noqa: E402
from facility.ports import free_port  # noqa: E402
from facility.users import ensure_demo_users  # noqa: E402
from stack.embedded.broker import Broker  # noqa: E402
from stack.embedded.postgres import PostgresServer  # noqa: E402

CLI = [sys.executable, "-m", "stack.cli"]
RUNS = 6
RUN_S = 8.0
PASSWORD = "bench-stops-password"


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=log.parent)


def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[float, int]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return time.monotonic() - t0, -9
    return time.monotonic() - t0, code


def show(name: str, stops: list[tuple[float, int]]) -> float:
    slowest = max(s for s, _ in stops)
    every = " ".join(f"{s:.2f}" for s, _ in stops)
    print(f"{name}: {len(stops)} stops, slowest {slowest:.2f} s, all: {every} s, "
          f"statuses {sorted({c for _, c in stops})}", flush=True)
    return slowest


def gateway(work: Path, site: Path, env: dict[str, str]) -> list[tuple[float, int]]:
    out = []
    for i in range(RUNS):
        log = work / f"gateway-{i}.log"
        proc = start(["gateway", "--site", str(site), "--gateway", "gw-load-1", "--state-dir",
                      str(work / "state")], log, env)
        wait_for(lambda log=log: "online (session" in log.read_text(), 120, "gateway online")
        time.sleep(RUN_S)
        out.append(stop(proc, signal.SIGTERM if i % 2 == 0 else signal.SIGINT))
        text = log.read_text(errors="replace")
        shutdown = text[text.find("received SIG"):].splitlines()
        noisy = [line for line in shutdown if " WARNING " in line or " ERROR " in line]
        if noisy:
            print(f"  gateway run {i}: {len(noisy)} warnings/errors at shutdown, e.g. "
                  f"{noisy[0]}", flush=True)
    return out


def api(work: Path, site: Path, env: dict[str, str]) -> list[tuple[float, int]]:
    out = []
    for i in range(RUNS):
        port = free_port()
        log = work / f"api-{i}.log"
        proc = start(["api", "--site", str(site), "--host", "127.0.0.1", "--port", str(port)],
                     log, env)
        base = f"http://127.0.0.1:{port}/api/v1"
        wait_for(lambda base=base: _ok(f"{base}/health"), 120, "api health")
        form = urllib.parse.urlencode({"username": "operator", "password": PASSWORD}).encode()
        with urllib.request.urlopen(f"{base}/auth/token", data=form, timeout=10) as resp:
            token = json.loads(resp.read())["access_token"]
        req = urllib.request.Request(f"{base}/stream",
                                     headers={"Authorization": f"Bearer {token}"})
        stream = urllib.request.urlopen(req, timeout=30)
        stream.readline()
        reader = threading.Thread(target=_read_to_end, args=(stream,), daemon=True)
        reader.start()
        time.sleep(1.0)
        out.append(stop(proc, signal.SIGTERM if i % 2 == 0 else signal.SIGINT))
        reader.join(10)
    return out


def _read_to_end(stream: Any) -> None:
    try:
        stream.read()
    except OSError as exc:  # http.client.IncompleteRead is not one: a cut stream
        print(f"  the live stream was cut: {exc}", flush=True)
    except http.client.IncompleteRead as exc:
        print(f"  the live stream was cut: {exc!r}", flush=True)


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def main() -> None:
    devices = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory(prefix="bench-stops-") as tmp:
        work = Path(tmp)
        pg = PostgresServer(work / "pgdata", free_port())
        pg.start()
        broker = Broker(work / "broker", free_port(), prefer="mosquitto")
        sim: subprocess.Popen[bytes] | None = None
        try:
            broker.start()
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute('CREATE DATABASE "bench"')
            url = pg.url("bench")
            migrate(url)
            with psycopg.connect(url) as conn:
                ensure_demo_users(conn, PASSWORD)
            env = os.environ | {"FACILITY_MQTT_URL": broker.url, "FACILITY_DATABASE_URL": url,
                                "PYTHONPATH": str(ROOT), "FACILITY_LOG_LEVEL": "INFO"}
            site = work / "site.yaml"
            sim = start(["simulate", "--load", str(devices), "--bacnet-panels", "0",
                         "--write-site", str(site)], work / "simulate.log", env)
            wait_for(site.exists, 300, "the load site")
            print(f"{devices} simulated Modbus devices, 1 s polls", flush=True)
            g = show("gateway", gateway(work, site, env))
            a = show("api", api(work, site, env))
            s = show("simulate", [stop(sim, signal.SIGTERM)])
            print(f"RESULT gateway_slowest_stop_s={g:.2f} api_slowest_stop_s={a:.2f} "
                  f"simulate_stop_s={s:.2f}")
        finally:
            if sim is not None and sim.poll() is None:
                sim.kill()
            broker.stop()
            pg.stop()


if __name__ == "__main__":
    main()
