"""API benchmark: p50/p95 of the routes the duty-room board and the device page call, on the
demo estate (2 buildings, 10 devices) and on a portfolio (100 estates, 1,000 buildings, 10,000
devices).

Each estate gets its own database on a private PostgreSQL (free loopback port, durability off:
the routes only read) filled by bench/portfolio.py: site files loaded by the site model,
registered by facility.db.registry.sync_site (the services' code), statuses, latest values,
a year of closed alarms and orders, active alarms with fault orders and open maintenance
orders written with COPY and set-based SQL (not through simulated gateways), and 30 days of
1 s readings (2.6 M rows) of one pump set's outlet pressure rolled up as ingest's job does.
Then ``facility api`` serves it in a child process and this process asks each route
``--rounds`` times in turn (after a warm-up), one request at a time. On the portfolio it then
opens ``--streams`` live streams (bench/streams.py, in a child process: each its own socket
and token, as the duty-room pages of a monitoring centre would), asks every route
``--rounds`` times again while a probe event is raised every half second (20 at least), and
measures when each stream received each probe: the routes' p95 without streams is the
baseline of the same run.

Ends with ``RESULT devices=... p95_ms_max=... demo_p95_ms_max=... slowest_route=... streams=...
stream_event_p99_ms=... p95_ms_max_with_streams=... stream_events_missed=...
naive_event_reads_ms=...``: the naive baseline of the streams is how long one event keeps the
API's pool of 8 busy when every stream reads it with its own query, as before the event hub.
Usage: .venv/bin/python bench/api.py [--estates 100] [--rounds 40] [--streams 2000]"""

from __future__ import annotations

import sys
from pathlib import Path

if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg

from api.app import POOL_MAX_SIZE
from bench.portfolio import (
    Portfolio,
    load_portfolio,
    one_point_month,
    populate,
    write_portfolio,
)
from bench.streams import StreamFigures, naive_event_reads_s, raise_fd_limit
from facility.db.migrate import migrate
from facility.ports import free_port
from stack.embedded.lifetime import stop_process
from stack.embedded.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench password 1"
Route = tuple[str, Callable[[int], str]]
Times = dict[str, list[float]]


@dataclass(frozen=True, slots=True)
class WithStreams:
    times: Times  # the routes while the streams are open and probes fan out
    figures: StreamFigures
    api_rss_mb: float  # the API process with every stream open
    naive_event_reads_s: float  # one event read by every stream with its own query, pool of 8


def routes(conn: psycopg.Connection) -> list[Route]:
    """The pages' requests; ``i`` rotates over buildings and devices."""
    buildings = conn.execute("SELECT DISTINCT site_id, building FROM devices ORDER BY 1, 2"
                             ).fetchall()
    devices = [r[0] for r in conn.execute(
        "SELECT name FROM devices WHERE type = 'elevator' ORDER BY id").fetchall()]
    pump = conn.execute("SELECT d.name FROM devices d JOIN points p ON p.device_id = d.id"
                        " JOIN telemetry_1h t ON t.point_id = p.id LIMIT 1").fetchone()
    assert pump is not None

    def building(i: int) -> str:
        site, b = buildings[(i * 37) % len(buildings)]
        return f"/devices?site={site}&building={b}&values=false"

    def device(i: int) -> str:
        return str(devices[(i * 101) % len(devices)])

    return [
        ("sites overview", lambda i: "/sites"),
        ("devices of a building", building),
        ("devices with problems", lambda i: "/devices?problems=true&values=false&limit=2000"),
        ("active alarms", lambda i: "/alarms?state=unack&state=ack&state=rtn_unack&limit=1000"),
        ("open fault orders", lambda i: "/work-orders?open=true&kind=fault"),
        ("open maintenance, due first", lambda i: "/work-orders?open=true&kind=maintenance"),
        ("device search", lambda i: f"/devices?q=lift-{i % 6 + 1}&values=false&limit=20"),
        ("a device", lambda i: f"/devices/{device(i)}"),
        ("a device's points", lambda i: f"/devices/{device(i)}/points"),
        ("a device's alarms", lambda i: f"/alarms?device={device(i)}&limit=20"),
        ("a device's orders", lambda i: f"/work-orders?device={device(i)}&limit=20"),
        ("30-day chart (1 s data)",
         lambda i: f"/devices/{pump[0]}/telemetry?point=outlet_pressure&range=month"),
    ]


def prepare(server: PostgresServer, name: str,
            portfolio: Portfolio) -> tuple[str, dict[str, float]]:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    migrate(url)
    now = datetime.now(UTC)
    timings = populate(url, portfolio, PASSWORD, now=now)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT p.id FROM points p JOIN devices d ON d.id = p.device_id"
                           " WHERE d.type = 'pump_set' AND p.name = 'outlet_pressure'"
                           " ORDER BY d.id LIMIT 1").fetchone()
    assert row is not None
    t0 = time.perf_counter()
    rows = one_point_month(url, row[0], now)
    timings["telemetry_rows"] = rows
    timings["telemetry_s"] = time.perf_counter() - t0
    return url, timings


def measure(url: str, site_file: Path, rounds: int, streams: int = 0
            ) -> tuple[Times, WithStreams | None]:
    port = free_port()
    env = {**os.environ, "FACILITY_DATABASE_URL": url}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/facility"), "api", "--site", str(site_file), "--port", str(port),
         "--log-level", "WARNING"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            _wait(client)
            token = client.post("/api/v1/auth/token", data={
                "username": "operator", "password": PASSWORD}).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            with psycopg.connect(url) as conn:
                plan = routes(conn)
            times = _rounds(client, plan, rounds)
            if not streams:
                return times, None
            return times, _with_streams(url, port, proc.pid, client, plan, rounds, streams)
    finally:
        stop_process(proc, "api")


def _rounds(client: httpx.Client, plan: list[Route], rounds: int) -> Times:
    times: Times = {name: [] for name, _ in plan}
    for i in range(rounds + 3):
        for name, path in plan:
            t0 = time.perf_counter()
            resp = client.get("/api/v1" + path(i))
            elapsed = (time.perf_counter() - t0) * 1000
            resp.raise_for_status()
            if i >= 3:  # warm-up
                times[name].append(elapsed)
    return times


def _with_streams(url: str, port: int, pid: int, client: httpx.Client,
                  plan: list[Route], rounds: int, count: int) -> WithStreams:
    """Open ``count`` streams (in a child process, bench/streams.py), then time the routes
    while probes fan out; every stream must receive every probe."""
    with psycopg.connect(url) as conn:
        site = conn.execute("SELECT min(id) FROM sites").fetchone()
    assert site is not None
    holder = subprocess.Popen(
        [sys.executable, "-m", "bench.streams", url, str(port), str(site[0]), str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        ready = holder.stdout.readline().decode().split()
        assert ready and ready[0] == "ready", f"the streams did not open: {ready}"
        print(f"{count} streams open in {float(ready[1]):.1f} s")
        rss = _rss_mb(pid)
        times = _rounds(client, plan, rounds)
        holder.stdin.write(b"stop\n")
        holder.stdin.flush()
        figures = StreamFigures(**json.loads(holder.stdout.readline()))
    finally:
        stop_process(holder, "streams")
    naive = asyncio.run(naive_event_reads_s(url, count, POOL_MAX_SIZE))
    return WithStreams(times, figures, rss, naive)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait(client: httpx.Client, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.get("/api/v1/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the API did not start")


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estates", type=int, default=100, help="10 buildings each")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--streams", type=int, default=2000,
                        help="live streams open during the second round on the portfolio")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # This process and the API (which inherits the limit) each hold a socket per stream.
    print(f"open files limit: {raise_fd_limit(args.streams + 1024)};"
          f" load average at start: {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="facility-bench-api-"))
    server = PostgresServer(tmp / "pg", free_port(), settings={
        "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
    server.start()
    results: dict[str, Times] = {}
    sizes: dict[str, int] = {}
    loaded: WithStreams | None = None
    try:
        t0 = time.perf_counter()
        paths = write_portfolio(tmp / "sites", args.estates)
        written = time.perf_counter() - t0
        t0 = time.perf_counter()
        portfolio = load_portfolio(paths)
        loaded_s = time.perf_counter() - t0
        print(f"portfolio: {len(paths)} site files, {portfolio.buildings} buildings,"
              f" {portfolio.devices} devices; written in {written:.1f} s, loaded by the site"
              f" model in {loaded_s:.1f} s")
        demo = load_portfolio([ROOT / "sites/demo.yaml"])
        for label, pf, site_file in (("demo", demo, ROOT / "sites/demo.yaml"),
                                     ("portfolio", portfolio, paths[0])):
            url, timings = prepare(server, label, pf)
            print(f"{label}: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
            streams = args.streams if label == "portfolio" else 0
            results[label], with_streams = measure(url, site_file, args.rounds, streams)
            loaded = with_streams or loaded
            sizes[label] = pf.devices
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, sizes, loaded)


def report(results: dict[str, Times], sizes: dict[str, int], loaded: WithStreams | None
           ) -> None:
    streams = loaded.figures.streams if loaded else 0
    print(f"\n| route | demo p50 | demo p95 | {sizes['portfolio']:,} devices p50 | p95 |"
          f" p50 with {streams:,} streams | p95 with streams |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    big, small = results["portfolio"], results["demo"]
    busy = loaded.times if loaded else {}
    for name in big:
        extra = (f" {p(busy[name], 50):.1f} | {p(busy[name], 95):.1f} |" if busy
                 else " - | - |")
        print(f"| {name} | {p(small[name], 50):.1f} | {p(small[name], 95):.1f} |"
              f" {p(big[name], 50):.1f} | {p(big[name], 95):.1f} |{extra}")
    slowest = max(big, key=lambda n: p(big[n], 95))
    demo_max = max(p(v, 95) for v in small.values())
    line = (f"RESULT devices={sizes['portfolio']} p95_ms_max={p(big[slowest], 95):.1f}"
            f" demo_p95_ms_max={demo_max:.1f} slowest_route={slowest.replace(' ', '_')}")
    if loaded:
        f = loaded.figures
        print(f"\nstreams: {f.streams} opened in {f.opened_s:.1f} s, API RSS"
              f" {loaded.api_rss_mb:.0f} MB with all open; {f.probes} probes x {f.streams}"
              f" streams: {len(f.delays_ms)} arrivals, {f.missed} missed, closed by the"
              f" server {f.closed_by_server}; delay ms p50 {p(f.delays_ms, 50):.0f}"
              f" p99 {p(f.delays_ms, 99):.0f} max {max(f.delays_ms):.0f}")
        print(f"naive baseline: one event read by each of the {f.streams} streams with its own"
              f" query keeps a pool of {POOL_MAX_SIZE} busy for"
              f" {loaded.naive_event_reads_s * 1000:.0f} ms (the hub: one query)")
        line += (f" streams={f.streams} stream_event_p99_ms={p(f.delays_ms, 99):.0f}"
                 f" p95_ms_max_with_streams={max(p(v, 95) for v in busy.values()):.1f}"
                 f" stream_events_missed={f.missed}"
                 f" naive_event_reads_ms={loaded.naive_event_reads_s * 1000:.0f}")
    print(line)


if __name__ == "__main__":
    main()
