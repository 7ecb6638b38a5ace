"""Machine-loss benchmark of the monitoring centre (not a test; starts everything itself; root).

Two set-ups in one run, each fed by the same field: the demo estate (two buildings:
elevators, pump sets, switchgear, three fire panels; simulated in this process so that faults
start at known instants) plus ``--load`` simulated 50-point Modbus devices
(``facility simulate --load``), one ``facility gateway`` process per gateway:

1. baseline, today's single machine (bench/failover_single.py): embedded PostgreSQL and
   mosquitto on 127.0.0.1, one ingest, rules and API; "killing the machine" SIGKILLs every
   server and service process, which come back after ``--reboot-s``;
2. the centre (bench/failover_centre.py): three machines (network namespaces on a private
   bridge) with Patroni/etcd PostgreSQL, a RabbitMQ cluster, ingest, rules and the API on two
   machines each (``--standby``); the field is a fourth machine. Each machine in turn loses
   its link and every process (SIGKILL), and comes back after ``--down-s``.

During each kill a scripted critical fault begins ``--fault-after-s`` after the kill: an
entrapment and a fire alarm, on devices of their own. An auditor holds a persistent MQTT
session on every telemetry topic; probes write to the database and publish to the broker
every 0.25 s through the services' own targets; the duty room's view is the API's alarm
list, polled on every API instance in turn.

Counted from sequence numbers, the database and the API, not from logs:
- ``lost``: telemetry seqs missing in a gateway session plus audited messages whose rows
  are not all stored; ``duplicated``: messages stored with more rows than they carry, and
  scripted faults whose alarm was raised, or work order created, more than once (the outbox
  events the code wrote);
- ``missed_alarms``: scripted faults whose alarm never showed in the API;
- ``alarm_delay_s_max``: the worst (alarm first listed by the API) - (fault start + the
  rule's on-delay) over all kills; ``db_failover_s`` / ``broker_failover_s``: the longest a
  probe could not commit / get a PUBACK after a kill;
- ``*_points_per_s``: a burst of telemetry for a gateway no process runs, as fast as the
  broker acknowledges, timed until every point is stored (nothing lost, else 0).

Ends with ``RESULT lost=... duplicated=... missed_alarms=... alarm_delay_s_max=...
db_failover_s=... broker_failover_s=... single_machine_alarm_delay_s_max=...
centre_points_per_s=... single_machine_points_per_s=...``.
Usage: .venv/bin/python bench/failover.py [--load 100] [--down-s 60] [--reboot-s 30]"""

from __future__ import annotations

import sys
from pathlib import Path

if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Protocol

import yaml

from bench.failover_probes import DutyRoom, Outages, burst, probe_broker, probe_database
from bench.failover_results import (
    LOCKS,
    KillRow,
    LockHolders,
    PhaseResult,
    count,
    report,
    table,
)
from bench.faults import (
    CLI,
    ON_DELAY_S,
    ROOT,
    SITE_ID,
    Audit,
    DemoEstate,
    Fault,
    audit,
    demo_site,
    start_load,
    wait_drained,
)
from facility.mqtt_endpoint import MqttEndpoint
from facility.ports import free_port
from facility.site import load_site
from stack.broker_config import gateway_user, ingest_user
from stack.embedded.lifetime import stop_process

log = logging.getLogger("bench.failover")
PASSWORD = "bench failover password"
ELEVATORS = ["a-elevator-1", "b-elevator-1", "a-elevator-2", "b-elevator-2"]
PANELS = ["a-firepanel", "b-firepanel", "a-firepanel-2", "b-firepanel-2"]
GATEWAYS = ("gw-a", "gw-b", "gw-load-1")
BURST_GATEWAY, BURST_DEVICES = "gw-burst", 20


class SetUp(Protocol):
    name: str
    mqtt_protocol: str
    victims: list[str]

    @property
    def database_url(self) -> str: ...
    @property
    def mqtt_url(self) -> str: ...
    @property
    def api_urls(self) -> list[str]: ...
    def endpoint(self, user: str) -> str | MqttEndpoint: ...
    def client_env(self, user: str) -> dict[str, str]: ...
    def start(self, site_path: Path) -> None: ...
    def kill(self, victim: str) -> None: ...
    def revive(self, victim: str) -> None: ...
    def close(self) -> None: ...


def failover_site(load_path: Path, work: Path) -> tuple[Path, list[str]]:
    """bench/faults.py's estate, two more fire panels (a fault of its own per kill) and a
    building behind a gateway no process runs (the throughput burst's devices)."""
    path, demo_ids = demo_site(load_path, work)
    raw = yaml.safe_load(path.read_text())
    for building, instance in (("a", 1003), ("b", 1004)):
        [b] = [x for x in raw["buildings"] if x["id"] == building]
        b["devices"].append({"id": f"{building}-firepanel-2", "type": "fire_panel",
                             "profile": "firepanel", "address": {
                                 "protocol": "bacnet", "device_instance": instance,
                                 "port": free_port(socket.SOCK_DGRAM)}})
    raw["gateways"].append({"id": BURST_GATEWAY})
    raw["buildings"].append({"id": "burst", "gateway": BURST_GATEWAY, "devices": [
        {"id": f"burst-{i:02d}", "type": "switchgear", "profile": "load_meter",
         "address": {"protocol": "modbus", "port": 9, "unit": i + 1}}
        for i in range(BURST_DEVICES)]})
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path, [*demo_ids, "a-firepanel-2", "b-firepanel-2"]


class Field:
    """The gateways (processes) of the estate, pointed at a set-up's brokers."""

    def __init__(self, work: Path, site_path: Path, setup: SetUp) -> None:
        self.env = {gw: os.environ | {"FACILITY_MQTT_URL": setup.mqtt_url,
                                      "FACILITY_MQTT_PROTOCOL": setup.mqtt_protocol,
                                      **setup.client_env(gateway_user(SITE_ID, gw)),
                                      "FACILITY_SITE": str(site_path), "HOME": str(work)}
                    for gw in GATEWAYS}
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for gw in GATEWAYS:
            path = self.work / f"{gw}.log"
            with open(path, "ab") as out:
                self.procs[gw] = subprocess.Popen(
                    [*CLI, "gateway", "--gateway", gw, "--state-dir", str(self.work)],
                    cwd=ROOT, env=self.env[gw], stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        for gw in GATEWAYS:
            while f"gateway {gw} online" not in (self.work / f"{gw}.log").read_text(
                    errors="replace"):
                if self.procs[gw].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway {gw} did not start; see {self.work}")
                time.sleep(0.2)

    def stop(self) -> None:
        for gw, proc in self.procs.items():
            stop_process(proc, gw, sig=signal.SIGINT)


async def until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True


async def kill_one(setup: SetUp, k: int, victim: str, estate: DemoEstate, room: DutyRoom,
                   probes: tuple[Outages, Outages], holders: LockHolders,
                   args: argparse.Namespace, down_s: float) -> tuple[KillRow, list[Fault]]:
    held = getattr(setup, "describe", lambda _v: "")(victim)
    killed_at = time.monotonic()
    log.info("kill %d: %s (%s)", k + 1, victim, held or "everything")
    await asyncio.to_thread(setup.kill, victim)
    await asyncio.sleep(args.fault_after_s)
    faults = [Fault(ELEVATORS[k], "entrapment", "entrapment", "live"),
              Fault(PANELS[k], "fire_alarm", "fire_alarm", "live", zone=1)]
    for f in faults:
        estate.set(f, True)

    def raised() -> bool:
        return all(f.start is not None and room.first_seen(f.device, f.alarm_type, f.start)
                   for f in faults)

    await asyncio.sleep(max(0.0, killed_at + down_s - time.monotonic()))
    log.info("reviving %s", victim)
    await asyncio.to_thread(setup.revive, victim)
    await until(raised, args.alarm_timeout_s)
    await asyncio.sleep(max(0.0, args.fault_s - (time.monotonic() - killed_at)))
    for f in faults:
        estate.set(f, False)
    await asyncio.sleep(args.settle_s)
    row = KillRow(victim, held, probes[0].cost_after(killed_at),
                  probes[1].cost_after(killed_at),
                  {lock.split("-")[0]: holders.takeover_s(lock, killed_at) for lock in LOCKS})
    for f in faults:
        assert f.start is not None
        seen = room.first_seen(f.device, f.alarm_type, f.start)
        if seen is not None:
            # an alarm before the on-delay ran out (the passengers pressed the alarm
            # button: raised at once) is not late: 0
            row.delays[f"{f.alarm_type}@{f.device}"] = max(
                0.0, seen - f.start.timestamp() - ON_DELAY_S[f.alarm_type])
    return row, faults


async def run_phase(setup: SetUp, args: argparse.Namespace, work: Path,
                    down_s: float) -> PhaseResult:
    """The field, the set-up, the kills, the burst and the counts of one set-up."""
    load_path = work / "load.yaml"
    load = start_load(args.load, load_path, work / "load.log")
    tasks: list[asyncio.Task[None]] = []
    field_: Field | None = None
    result = PhaseResult(setup.name)
    try:
        while not load_path.exists():
            if load.poll() is not None:
                raise RuntimeError(f"load simulator failed; see {work / 'load.log'}")
            await asyncio.sleep(0.5)
        site_path, demo_ids = failover_site(load_path, work)
        site = load_site(site_path)
        await asyncio.to_thread(setup.start, site_path)
        estate, box = DemoEstate(site, demo_ids), Audit()
        probes = (Outages(), Outages())
        room = DutyRoom(setup.api_urls, "operator", PASSWORD, SITE_ID)
        holders = LockHolders(setup.database_url)
        prober = setup.endpoint(gateway_user(SITE_ID, BURST_GATEWAY))
        tasks += [asyncio.create_task(c) for c in (
            # with ingest's login: a broker with per-user permissions (RabbitMQ) lets it
            # keep session queues named after ingest's client ids only
            estate.run(), audit(setup.endpoint(ingest_user(SITE_ID)), box,
                                protocol=setup.mqtt_protocol,
                                client_id=f"ingest-{SITE_ID}-audit"),
            probe_database(setup.database_url, probes[0]),
            probe_broker(prober, setup.mqtt_protocol,
                         f"facility/v1/{SITE_ID}/{BURST_GATEWAY}/probe", probes[1]),
            room.run(), holders.run())]
        field_ = Field(work, site_path, setup)
        await asyncio.to_thread(field_.start)
        log.info("%s: warming up %.0f s", setup.name, args.warmup_s)
        await asyncio.sleep(args.warmup_s)
        faults: list[Fault] = []
        for k, victim in enumerate(setup.victims):
            row, started = await kill_one(setup, k, victim, estate, room, probes, holders,
                                          args, down_s)
            result.rows.append(row)
            faults += started
            log.info("%s", table(PhaseResult(setup.name, rows=[row])).splitlines()[-1])
        result.burst = await burst(site, BURST_GATEWAY, prober, setup.mqtt_protocol,
                                   setup.database_url, messages=args.burst_messages)
        log.info("%s: burst of %d points stored %d in %.1f s", setup.name,
                 result.burst.points, result.burst.stored_points, result.burst.seconds)
        await wait_drained(site, 120)
        await asyncio.to_thread(field_.stop)
        field_ = None
        await asyncio.sleep(15)  # ingest commits what it holds
        await asyncio.to_thread(count, setup.database_url, box, faults, room, result)
    except Exception:
        log.exception("%s: the phase failed", setup.name)
        raise
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if field_ is not None:
            await asyncio.to_thread(field_.stop)
        stop_process(load, "load simulator", sig=signal.SIGINT)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=100, help="simulated load devices")
    parser.add_argument("--down-s", type=float, default=60.0,
                        help="how long a centre machine stays dead")
    parser.add_argument("--reboot-s", type=float, default=30.0,
                        help="how long the single machine takes to come back")
    parser.add_argument("--fault-after-s", type=float, default=2.0,
                        help="the faults begin this long after each kill")
    parser.add_argument("--fault-s", type=float, default=45.0, help="how long a fault lasts")
    parser.add_argument("--alarm-timeout-s", type=float, default=180.0)
    parser.add_argument("--settle-s", type=float, default=20.0, help="after each kill")
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--burst-messages", type=int, default=10_000)
    parser.add_argument("--broker", choices=["rabbitmq", "nats", "field-mosquitto"],
                        default="rabbitmq", help="the centre's broker (field-mosquitto: one "
                        "broker on the never-killed field machine, a dry run of the "
                        "database's and the services' failover alone)")
    for name in ("ttl", "loop-wait", "retry-timeout"):
        parser.add_argument(f"--patroni-{name}", type=int, metavar="S",
                            help="Patroni's timing (default: the centre description's)")
    parser.add_argument("--only", choices=["single", "centre"],
                        help="one set-up alone (a quick look; no comparison)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    work.chmod(0o755)  # the centre's engines run as postgres and read their files below
    single = centre = None
    if args.only != "centre":
        single = run_single(args, work / "single")
    if args.only != "single":
        from bench.failover_centre import run_centre

        centre = run_centre(args, work / "centre", run_phase)
    report(centre, single)
    log.info("logs in %s", work)


def run_single(args: argparse.Namespace, work: Path) -> PhaseResult:
    from bench.failover_single import SingleMachine

    work.mkdir(parents=True)
    setup = SingleMachine(work, PASSWORD)
    setup.victims = ["machine", "machine", "machine"]
    try:
        return asyncio.run(run_phase(setup, args, work, args.reboot_s))
    finally:
        setup.close()


if __name__ == "__main__":
    main()
