"""Fault-injection benchmark of the alarm path (not a test; starts its own servers).

A private PostgreSQL and mosquitto on 127.0.0.1 (free ports), the demo estate (two buildings:
elevators, pump sets, switchgear, fire panels; simulated in this process so that faults
start at known instants) plus ``--load`` (500) simulated 50-point Modbus devices
(``facility simulate --load``), one ``facility gateway`` process per gateway (gw-a, gw-b,
gw-load-1), ``facility ingest`` and ``facility rules``, all sharing this machine's CPUs.
Then, in turn:

1. the broker is stopped for ``--outage-s`` (60 s); a critical fault (an entrapment on
   b-elevator-1) begins and ends inside it; an entrapment (a-elevator-2) and a fire alarm
   (b-firepanel zone 3) begin one and two seconds after the broker is back, while the
   gateways' queues replay;
2. PostgreSQL is stopped for ``--outage-s``; a fire alarm (a-firepanel zone 1) begins inside;
3. ingest, rules and gateway gw-load-1 are each killed with SIGKILL and restarted 5 s later;
   an entrapment (a-elevator-1) begins while rules is dead.

An auditor holds a persistent MQTT session on every telemetry topic for the whole run.

Counted from sequence numbers and the database, not from logs:
- ``lost``: telemetry seqs missing in a gateway session (from 1 to the highest the auditor
  saw) plus messages the auditor received whose rows are not all in ``telemetry``;
- ``duplicated``: messages stored with more rows than they carry, scripted faults recorded
  as more than one alarm, and follow-up orders opened twice;
- ``missed_alarms``: scripted faults without their alarm (the one inside the broker outage:
  without its historical alarm and its follow-up work order marked after the fact);
- ``late_alarm_s_max``: for the faults that begin during the replay, the alarm's
  ``raised_at`` minus the fault's start minus the rule's on-delay (the worst); the faults
  held back by a dead database or a dead rules process are reported apart (``held_s_max``);
- ``backlog_drain_s``: from the broker's restart until every gateway's queue is empty
  (their Prometheus ``gateway_queue_depth``);
- ``*_rss_mb_max``: peak resident memory (VmRSS) of the gateways (the largest), ingest and
  rules, sampled every second.

Ends with ``RESULT lost=... duplicated=... missed_alarms=... late_alarm_s_max=...
backlog_drain_s=... gateway_rss_mb_max=... ingest_rss_mb_max=... rules_rss_mb_max=...``.
Usage: .venv/bin/python bench/faults.py [--load 500] [--outage-s 60]"""

from __future__ import annotations

import sys
from pathlib import Path

if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import yaml

from facility.db.migrate import migrate
from facility.mqtt_endpoint import MqttEndpoint
from facility.mqtt_session import MqttSession
from facility.ports import free_port
from facility.site import Site, load_site
from simulators.estate import Estate
from simulators.misbehaviour import WELL_BEHAVED
from simulators.models import DeviceModel, build_model, seed_for
from simulators.runner import DeviceServer, make_server
from stack.embedded.broker import Broker
from stack.embedded.lifetime import stop_process
from stack.embedded.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
SITE_ID = "bench"
CLI = [sys.executable, "-m", "stack.cli"]
ON_DELAY_S = {"entrapment": 10.0, "fire_alarm": 0.0}
log = logging.getLogger("bench.faults")


@dataclass
class Fault:
    device: str
    fault: str
    alarm_type: str
    kind: str  # live (during the replay), after_the_fact, held (db or rules down)
    zone: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class Proc:
    name: str
    args: list[str]
    ready: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    rss_mb_max: float = 0.0


@dataclass
class Audit:
    seqs: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (device, ts) -> rows
    messages: int = 0
    historical: int = 0


class Services:
    """The service processes, started as an operator starts them, killed and restarted."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.procs: dict[str, Proc] = {}

    def start(self, name: str, args: list[str], ready: str) -> None:
        p = self.procs.get(name) or Proc(name, args, ready, self.work / f"{name}.log")
        self.procs[name] = p
        offset = p.log.stat().st_size if p.log.exists() else 0
        with open(p.log, "ab") as out:
            p.proc = subprocess.Popen([*CLI, *args], cwd=ROOT, env=self.env, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while ready not in p.log.read_bytes()[offset:].decode(errors="replace"):
            if p.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {p.log}")
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        proc = self.procs[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def sample_rss(self) -> None:
        for p in self.procs.values():
            if p.proc is not None and p.proc.poll() is None:
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{p.proc.pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            p.rss_mb_max = max(p.rss_mb_max, int(line.split()[1]) / 1024)

    def stop_all(self) -> None:
        for p in reversed(list(self.procs.values())):
            if p.proc is not None:
                stop_process(p.proc, p.name, sig=signal.SIGINT)


class DemoEstate:
    """The demo estate's simulators in this process: faults start when the bench says."""

    def __init__(self, site: Site, device_ids: list[str]) -> None:
        devices = [site.devices[d] for d in device_ids]
        self.models: dict[str, DeviceModel] = {
            d.id: build_model(d.type, seed=seed_for(d.id)) for d in devices}
        self.estate = Estate(self.models, {d.id: d.building for d in devices})
        self.estate.step(0.0)
        self.servers: dict[str, DeviceServer] = {
            d.id: make_server(d, self.models[d.id].points(), WELL_BEHAVED) for d in devices}

    async def run(self) -> None:
        for server in self.servers.values():
            await server.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            while True:
                self.estate.step(loop.time() - start)
                for device_id, model in self.estate:
                    with contextlib.suppress(Exception):
                        await self.servers[device_id].publish(model.points())
                await asyncio.sleep(0.2)
        finally:
            for server in self.servers.values():
                await server.close()

    def set(self, fault: Fault, active: bool) -> None:
        self.models[fault.device].set_fault(fault.fault, active, fault.zone)
        if active:
            fault.start = datetime.now(UTC)
        else:
            fault.end = datetime.now(UTC)
        log.info("fault %s on %s %s", fault.fault, fault.device,
                 "started" if active else "ended")


def demo_site(load_site_path: Path, work: Path) -> tuple[Path, list[str]]:
    """The demo estate (free ports) and the load devices in one site; its demo devices."""
    def modbus(name: str, typ: str) -> dict[str, Any]:
        return {"id": name, "type": typ, "profile": typ,
                "address": {"protocol": "modbus", "port": free_port()}}

    def building(b: str, gw: str, instance: int) -> dict[str, Any]:
        return {"id": b, "gateway": gw, "devices": [
            modbus(f"{b}-elevator-1", "elevator"), modbus(f"{b}-elevator-2", "elevator"),
            modbus(f"{b}-pumps", "pump_set"), modbus(f"{b}-switchgear", "switchgear"),
            {"id": f"{b}-firepanel", "type": "fire_panel", "profile": "firepanel",
             "address": {"protocol": "bacnet", "port": free_port(socket.SOCK_DGRAM),
                         "device_instance": instance}}]}

    load = yaml.safe_load(load_site_path.read_text())
    demo = [building("a", "gw-a", 1001), building("b", "gw-b", 1002)]
    gateways = [{"id": g, "report_period_s": 30, "metrics_port": free_port(),
                 "buffer": {"path": str(work / f"queue-{g}.sqlite")}}
                for g in ("gw-a", "gw-b", "gw-load-1")]
    site = {"site": SITE_ID, "profiles_dir": str(ROOT / "profiles"), "gateways": gateways,
            "buildings": demo + load["buildings"]}
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(site), encoding="utf-8")
    return path, [d["id"] for b in demo for d in b["devices"]]


async def audit(url: str | MqttEndpoint, box: Audit, protocol: str = "5",
                client_id: str = "bench-audit") -> None:
    """Every telemetry message, on a persistent session: seqs and rows expected."""
    session = MqttSession(url, client_id, [f"facility/v1/{SITE_ID}/+/+/telemetry"],
                          protocol=protocol, receive_maximum=20_000, max_pending=100_000)
    runner = asyncio.create_task(session.run())
    try:
        while True:
            await session.arrived.wait()
            batch = session.take(5000)
            for d in batch:
                device = d.topic.decode().split("/")[4]
                msg = json.loads(d.payload)
                box.seqs[msg["session"]].add(msg["seq"])
                bad = {n for n, q in msg.get("quality", {}).items() if q != "good"}
                box.rows[(device, msg["ts"])] = len(set(msg["points"]) | bad)
                box.messages += 1
                box.historical += bool(msg.get("historical"))
            session.ack(batch)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await session.close()


def queue_depths(site: Site) -> dict[str, int]:
    out: dict[str, int] = {}
    for gw in site.config.gateways:
        if gw.metrics_port is None:  # a gateway no process runs (bench/failover.py's burst)
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics",
                                        timeout=2) as r:
                text = r.read().decode()
            m = re.search(r"^gateway_queue_depth\{[^}]*\} (\d+)", text, re.M)
            out[gw.id] = int(m.group(1)) if m else -1
        except OSError:
            out[gw.id] = -1
    return out


async def wait_drained(site: Site, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        depths = await asyncio.to_thread(queue_depths, site)
        if all(d == 0 for d in depths.values()):
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    return float("nan")


def count_rows(url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT d.name, t.time, count(*) FROM telemetry t JOIN points p ON p.id = t.point_id"
            " JOIN devices d ON d.id = p.device_id GROUP BY 1, 2").fetchall()
    return {(r[0], r[1].astimezone(UTC).isoformat().replace("+00:00", "Z")): int(r[2])
            for r in rows}


def ts_key(ts: str) -> str:
    """The auditor's ts as the database prints it (microseconds, Z)."""
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return dt.isoformat().replace("+00:00", "Z")


def judge(url: str, faults: list[Fault]) -> tuple[int, int, float, float]:
    """missed, duplicated (alarms and orders), late_s_max (live), held_s_max."""
    missed = dup = 0
    late = held = 0.0
    with psycopg.connect(url) as conn:
        for f in faults:
            assert f.start is not None
            rows = conn.execute(
                "SELECT a.id, a.raised_at, a.historical, w.after_the_fact FROM alarms a"
                " LEFT JOIN work_orders w ON w.id = a.work_order_id WHERE a.source = %s"
                " AND a.alarm_type = %s AND a.raised_at >= %s - interval '5 s'",
                (f.device, f.alarm_type, f.start)).fetchall()
            if f.kind == "after_the_fact":
                found = [r for r in rows if r[2] and r[3]]
                orders = conn.execute(
                    "SELECT count(*) FROM work_orders WHERE after_the_fact AND source = %s",
                    (f.device,)).fetchone()
                dup += max(0, (orders[0] if orders else 0) - 1)
            else:
                found = [r for r in rows if not r[2]]
            if not found:
                missed += 1
                log.warning("missed: %s on %s (%s)", f.alarm_type, f.device, f.kind)
                continue
            dup += len(found) - 1
            if f.kind != "after_the_fact":
                delay = (found[0][1] - f.start).total_seconds() - ON_DELAY_S[f.alarm_type]
                log.info("%s on %s (%s): raised %.1f s after its fault, %.1f s past its "
                         "on-delay", f.alarm_type, f.device, f.kind,
                         (found[0][1] - f.start).total_seconds(), delay)
                if f.kind == "live":
                    late = max(late, delay)
                else:
                    held = max(held, delay)
    return missed, dup, late, held


def start_load(n: int, site_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``facility simulate --load N``: it writes the matching site file once all listen."""
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [*CLI, "simulate", "--load", str(n), "--write-site", str(site_path),
             "--bacnet-panels", "0"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    pg = PostgresServer(work / "pgdata", free_port(), settings={"max_connections": "100"})
    pg.start()
    broker = Broker(work / "broker", free_port(), prefer="mosquitto")
    broker.start()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "bench"')
    url = pg.url("bench")
    migrate(url)
    load_path = work / "load.yaml"
    load = start_load(args.load, load_path, work / "load.log")
    services: Services | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        while not load_path.exists():
            if load.poll() is not None:
                raise RuntimeError(f"load simulator failed; see {work / 'load.log'}")
            await asyncio.sleep(0.5)
        # the load site names its single gateway gw-load-1
        site_path, demo_ids = demo_site(load_path, work)
        site = load_site(site_path)
        estate = DemoEstate(site, demo_ids)
        box = Audit()
        tasks += [asyncio.create_task(estate.run()),
                  asyncio.create_task(audit(broker.url, box))]
        env = os.environ | {"FACILITY_DATABASE_URL": url, "FACILITY_MQTT_URL": broker.url,
                            "FACILITY_SITE": str(site_path), "FACILITY_LOG_LEVEL": "INFO",
                            "HOME": str(work)}
        services = Services(work, env)
        svc = services
        await asyncio.to_thread(svc.start, "ingest",
                                ["ingest", "--share-group", args.ingest_share_group],
                                "ingest subscribed to")
        await asyncio.to_thread(svc.start, "rules",
                                ["rules", "--procedures", str(ROOT / "procedures")],
                                "rules subscribed to")
        for gw in ("gw-a", "gw-b", "gw-load-1"):
            await asyncio.to_thread(svc.start, gw, ["gateway", "--gateway", gw, "--state-dir",
                                                    str(work)], f"gateway {gw} online")

        async def sample() -> None:
            while True:
                svc.sample_rss()
                await asyncio.sleep(1.0)

        tasks.append(asyncio.create_task(sample()))
        log.info("warming up %.0f s", args.warmup_s)
        await asyncio.sleep(args.warmup_s)

        gone = Fault("b-elevator-1", "entrapment", "entrapment", "after_the_fact")
        trapped = Fault("a-elevator-2", "entrapment", "entrapment", "live")
        fire = Fault("b-firepanel", "fire_alarm", "fire_alarm", "live", zone=3)
        fire_db = Fault("a-firepanel", "fire_alarm", "fire_alarm", "held", zone=1)
        trapped_rules = Fault("a-elevator-1", "entrapment", "entrapment", "held")
        faults = [gone, trapped, fire, fire_db, trapped_rules]

        log.info("broker down for %.0f s", args.outage_s)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(args.outage_s / 4)
        estate.set(gone, True)
        await asyncio.sleep(max(15.0, args.outage_s / 4))
        estate.set(gone, False)
        await asyncio.sleep(max(1.0, args.outage_s - args.outage_s / 4 - max(15.0,
                                                                           args.outage_s / 4)))
        await asyncio.to_thread(broker.start)
        back = time.monotonic()
        log.info("broker back; queued: %s", await asyncio.to_thread(queue_depths, site))
        drain = asyncio.create_task(wait_drained(site, 600))
        await asyncio.sleep(1.0)
        estate.set(trapped, True)
        await asyncio.sleep(1.0)
        estate.set(fire, True)
        backlog_drain_s = await drain
        log.info("queues empty %.1f s after the broker came back", backlog_drain_s)
        await asyncio.sleep(max(0.0, back + 30 - time.monotonic()))
        estate.set(trapped, False)
        estate.set(fire, False)
        await asyncio.sleep(10)

        log.info("PostgreSQL down for %.0f s", args.outage_s)
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(args.outage_s / 3)
        estate.set(fire_db, True)
        await asyncio.sleep(args.outage_s * 2 / 3)
        await asyncio.to_thread(pg.start)
        await asyncio.sleep(30)
        estate.set(fire_db, False)

        for name in ("ingest", "rules", "gw-load-1"):
            log.info("SIGKILL %s", name)
            svc.kill(name)
            if name == "rules":
                estate.set(trapped_rules, True)
            await asyncio.sleep(5)
            ready = svc.procs[name].ready
            await asyncio.to_thread(svc.start, name, svc.procs[name].args, ready)
            await asyncio.sleep(10)
        await asyncio.sleep(20)
        estate.set(trapped_rules, False)
        log.info("settling")
        await wait_drained(site, 120)
        for gw in ("gw-a", "gw-b", "gw-load-1"):  # no new telemetry while counting
            proc = svc.procs[gw].proc
            assert proc is not None
            await asyncio.to_thread(stop_process, proc, gw, sig=signal.SIGINT)
        await asyncio.sleep(15)  # ingest commits what it holds
        stored = await asyncio.to_thread(count_rows, url)
        lost_seq = sum(len(set(range(1, max(s) + 1)) - s) for s in box.seqs.values())
        lost_rows = dup_rows = 0
        for (device, ts), n in box.rows.items():
            got = stored.get((device, ts_key(ts)), 0)
            if got != n and lost_rows + dup_rows < 10:
                log.warning("%s at %s: %d rows expected, %d stored", device, ts, n, got)
            lost_rows += got < n
            dup_rows += got > n
        missed, dup_alarms, late, held = await asyncio.to_thread(judge, url, faults)
        gw_rss = max(svc.procs[g].rss_mb_max for g in ("gw-a", "gw-b", "gw-load-1"))
        print(f"audited {box.messages} telemetry messages ({box.historical} replayed) in "
              f"{len(box.seqs)} gateway sessions; seq gaps {lost_seq}, messages not stored "
              f"{lost_rows}; held alarms (database or rules down) at most {held:.1f} s past "
              f"their on-delay")
        print(f"RESULT lost={lost_seq + lost_rows} duplicated={dup_rows + dup_alarms} "
              f"missed_alarms={missed} late_alarm_s_max={late:.1f} "
              f"backlog_drain_s={backlog_drain_s:.1f} gateway_rss_mb_max={gw_rss:.0f} "
              f"ingest_rss_mb_max={svc.procs['ingest'].rss_mb_max:.0f} "
              f"rules_rss_mb_max={svc.procs['rules'].rss_mb_max:.0f}")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if services is not None:
            services.stop_all()
        stop_process(load, "load simulator", sig=signal.SIGINT)
        broker.stop()
        pg.stop()
        log.info("logs in %s", work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=500, help="simulated load devices")
    parser.add_argument("--outage-s", type=float, default=60.0, help="broker/database outage")
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument(
        "--ingest-share-group", default="",
        help="ingest's shared-subscription group; default none (one ingest, a plain "
             "subscription): mosquitto does not keep a shared subscription's messages for a "
             "member that has not reconnected since the broker restarted")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
