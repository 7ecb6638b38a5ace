"""Gateway benchmark: how many devices x points the gateway keeps at a 1 s poll on this
machine with no missed cycle, its CPU and memory, and the requests of its planned reads
against one request per point, in one run.

For each level of N devices (``LEVELS``), ``facility simulate --load N --write-site``
serves N Modbus devices of the 50-point ``load_meter`` profile (ports x unit ids) in one
child process, and ``facility gateway`` polls them at 1 s in another, publishing to a
private mosquitto (nobody subscribes: the broker's work is not the gateway's). After a
warm-up the gateway's own Prometheus endpoint is scraped at the start and end of a
measurement window: missed cycles are the overruns (ticks skipped because a device's
previous poll still ran), plus the polls short of N per second; CPU is the gateway
process' user+system time over the window (percent of one core), RSS its resident memory
at the end. The simulator runs on the same 2 cores and takes its share of the CPU.

Requests per cycle: ``requests_per_cycle`` is what the gateway's read plan sends for a
complete read of every point of every device (what a cycle costs when every poll class is
due); ``naive_requests_per_cycle`` is one request per point, as gateways that read point by
point do; the measured average requests per second (poll classes: fast points every second,
normal every 5 s, slow every 60 s) is printed beside them. This supersedes
bench/modbus_read_plan.py (planned vs per-point reads, measured on the wire).
With BENCH_MQTT_SECURE=1 each level's mosquitto runs as in production (TLS, one login per
identity, the ACL: stack/embedded/secure_broker.py) and the gateway logs in as itself.
Usage: .venv/bin/python bench/gateway.py"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facility.ports import free_port  # noqa: E402
from facility.profiles import ModbusProfile  # noqa: E402
from facility.site import ModbusAddress, Site, load_site  # noqa: E402
from gateway.modbus import ModbusReader  # noqa: E402
from stack.broker_config import gateway_user  # noqa: E402
from stack.embedded.broker import Broker  # noqa: E402
from stack.embedded.lifetime import die_with_parent, stop_process  # noqa: E402
from stack.embedded.secure_broker import secure_broker  # noqa: E402

LEVELS = (1000, 1500, 2000)
WARMUP_S = 20.0
WINDOW_S = 30.0
SECURE = os.environ.get("BENCH_MQTT_SECURE") == "1"
SITE_TIMEOUT_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Level:
    devices: int
    points: int = 0
    planned: int = 0  # requests of a complete read, planned
    naive: int = 0  # one per point
    polls_per_s: float = 0.0
    requests_per_s: float = 0.0
    overruns: float = 0.0
    short_polls: float = 0.0
    failures: float = 0.0
    cpu_percent: float = 0.0
    sim_cpu_percent: float = 0.0
    rss_mb: float = 0.0
    poll_max_ms: float = 0.0

    @property
    def missed(self) -> int:
        return int(self.overruns + self.short_polls + self.failures)


def spawn(args: list[str], log: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stack.cli", *args], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
            preexec_fn=die_with_parent, env=os.environ | (env or {}))


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, "child", timeout_s=20)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "device=" not in line:
            name, value = line.rsplit(" ", 1)
            out[name.split("{")[0] + ("" if "class=" not in name else name[name.index("class="):])
                ] = float(value)
    return out


def failures(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("gateway_poll_failures_total"))


def plan_counts(site: Site) -> tuple[int, int, int]:
    points = planned = 0
    for d in site.devices.values():
        assert isinstance(d.profile, ModbusProfile) and isinstance(d.config.address,
                                                                   ModbusAddress)
        reader = ModbusReader(d.id, d.config.address, d.profile.points, timeout_s=1.0,
                              options=d.config.modbus_options)
        points += len(d.profile.points)
        planned += len(reader.blocks)
    return points, planned, points


def run_level(n: int, broker: Broker | None, work: Path) -> Level:
    """One level against ``broker``, or (None: BENCH_MQTT_SECURE) a secure one of its own
    for the level's site."""
    level = Level(n)
    level_broker: Broker | None = None
    site_path = work / f"site-{n}.yaml"
    sim = spawn(["simulate", "--load", str(n), "--write-site", str(site_path),
                 "--bacnet-panels", "0", "--log-level", "WARNING"], work / f"sim-{n}.log")
    gw: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + SITE_TIMEOUT_S
        while not site_path.exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"load simulator did not start; see {work}/sim-{n}.log")
            time.sleep(0.2)
        site = load_site(site_path)
        level.points, level.planned, level.naive = plan_counts(site)
        port = free_port()
        gw_id = site.config.gateways[0].id
        env: dict[str, str] = {}
        if broker is None:
            secure = secure_broker(work / f"mqtt-{n}", [site], free_port())
            secure.broker.start()
            level_broker = broker = secure.broker
            env = secure.env(gateway_user(site.id, gw_id))
        gw = spawn(["gateway", "--site", str(site_path), "--gateway", gw_id,
                    "--mqtt-url", broker.url, "--state-dir", str(work / f"state-{n}"),
                    "--metrics-port", str(port), "--log-level", "WARNING"],
                   work / f"gateway-{n}.log", env)
        time.sleep(WARMUP_S)
        if gw.poll() is not None:
            raise SystemExit(f"gateway exited; see {work}/gateway-{n}.log")
        m0, c0, s0, t0 = scrape(port), cpu_s(gw.pid), cpu_s(sim.pid), time.monotonic()
        time.sleep(WINDOW_S)
        m1, c1, s1, t1 = scrape(port), cpu_s(gw.pid), cpu_s(sim.pid), time.monotonic()
        wall = t1 - t0
        level.rss_mb = rss_mb(gw.pid)
        level.cpu_percent = 100 * (c1 - c0) / wall
        level.sim_cpu_percent = 100 * (s1 - s0) / wall
        polls = m1["gateway_polls_total"] - m0["gateway_polls_total"]
        level.polls_per_s = polls / wall
        level.requests_per_s = (m1["gateway_requests_total"] - m0["gateway_requests_total"]) / wall
        level.overruns = m1["gateway_overruns_total"] - m0["gateway_overruns_total"]
        level.failures = failures(m1) - failures(m0)
        level.short_polls = max(0.0, n * int(wall) - polls - level.overruns)
        level.poll_max_ms = 1000 * m1["gateway_poll_seconds_max"]
        return level
    finally:
        if gw is not None:
            stop(gw)
        stop(sim)
        if level_broker is not None:
            level_broker.stop()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    broker = None if SECURE else Broker(work / "broker", free_port())
    if broker is not None:
        broker.start()
    levels: list[Level] = []
    started = time.monotonic()
    try:
        for n in LEVELS:
            levels.append(run_level(n, broker, work))
            print(f"level {n}: done after {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"gateway polling N load_meter devices (50 points) at 1 s for {WINDOW_S:.0f} s after "
          f"{WARMUP_S:.0f} s warm-up; simulator in its own process on the same "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'devices':>7} {'points':>7} {'polls/s':>8} {'missed':>6} {'fail':>5} "
          f"{'req/s':>7} {'planned/cyc':>11} {'naive/cyc':>9} {'gw cpu%':>7} {'sim cpu%':>8} "
          f"{'rss MB':>6} {'poll max ms':>11}")
    for lv in levels:
        print(f"{lv.devices:>7} {lv.points:>7} {lv.polls_per_s:>8.0f} {lv.missed:>6} "
              f"{lv.failures:>5.0f} {lv.requests_per_s:>7.0f} {lv.planned:>11} {lv.naive:>9} "
              f"{lv.cpu_percent:>7.0f} {lv.sim_cpu_percent:>8.0f} {lv.rss_mb:>6.0f} "
              f"{lv.poll_max_ms:>11.0f}")
    clean = [lv for lv in levels if lv.missed == 0]
    best = max(clean, key=lambda lv: lv.devices) if clean else min(levels,
                                                                  key=lambda lv: lv.missed)
    print(f"RESULT devices={best.devices} points={best.points} missed_cycles={best.missed} "
          f"requests_per_cycle={best.planned} naive_requests_per_cycle={best.naive} "
          f"cpu_percent={best.cpu_percent:.0f} rss_mb={best.rss_mb:.0f}")


if __name__ == "__main__":
    main()
