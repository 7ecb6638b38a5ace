"""Modbus read planning: requests per poll and polls per second of the gateway's planned block
reads (gateway.plan + gateway.modbus.ModbusReader) against one request per point.

Serves ``--devices`` simulated devices (elevator and switchgear profiles, alternating) with
``facility simulate`` in a child process on 127.0.0.1 free ports, stopped by pid at the end,
so the device side does not share the reader's CPU. Two reader configurations, both the
unchanged ModbusReader:

- planned: the gateway's default (``fill=10``): points of a table merged into blocks;
- naive: ``fill=-1``: no two points merged (a gap of -1 registers means "only overlapping
  points share a request"), one request per point; checked to be one block per point.

First a static check: one in-process ModbusDeviceServer per profile with fixed values is
read both ways and the two readings must be equal, every point good. Then, per mode, poll
cycles run back to back for ``--seconds`` (split in two rounds, modes alternating): a cycle
reads every device concurrently (one task per device, as the gateway's pollers do) and
every reading must hold every point, none bad. Then one device at a time, back to back,
for the latency of a poll alone. Prints a table and ends with one ``RESULT`` line.
Usage: .venv/bin/python bench/modbus_read_plan.py [--devices K] [--seconds S]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from facility.ports import free_port, wait_tcp
from facility.profiles import ModbusProfile
from facility.site import Device, ModbusAddress, Site, load_site
from gateway.modbus import ModbusReader
from gateway.plan import DEFAULT_FILL
from simulators.modbus_server import ModbusDeviceServer
from simulators.models import build_model, seed_for
from stack.embedded.lifetime import die_with_parent, stop_process

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
TYPES = ("elevator", "switchgear")
MODES = {"planned": DEFAULT_FILL, "naive": -1}
TIMEOUT_S = 1.0
SOLO_POLLS = 200  # per mode, spread over the devices
RUN_TIMEOUT_S = 300.0


@dataclass(slots=True)
class Stats:
    mode: str
    requests_per_cycle: int = 0
    devices: int = 0
    cycles: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    solo_s: list[float] = field(default_factory=list)

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.seconds if self.seconds else 0.0

    @property
    def polls_per_s(self) -> float:
        return self.cycles_per_s * self.devices

    @property
    def requests_per_poll(self) -> float:
        return self.requests_per_cycle / self.devices if self.devices else 0.0


def write_site(work: Path, k: int) -> Site:
    ports: set[int] = set()
    while len(ports) < k:
        ports.add(free_port())
    devices = [{"id": f"{TYPES[i % 2]}-{i}", "type": TYPES[i % 2], "profile": TYPES[i % 2],
                "address": {"protocol": "modbus", "port": port}}
               for i, port in enumerate(sorted(ports))]
    data = {"site": "bench", "profiles_dir": str(PROFILES), "gateways": [{"id": "gw"}],
            "buildings": [{"id": "a", "gateway": "gw", "devices": devices}]}
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_site(path, profiles_dir=PROFILES)


@contextmanager
def simulators(site: Site, work: Path) -> Iterator[None]:
    """``facility simulate`` for the site in a child process; SIGTERM by pid on the way out."""
    log_path = work / "simulate.log"
    with open(log_path, "ab") as logfile:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "simulate", "--site", str(site.path),
             "--log-level", "WARNING"],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work,
            start_new_session=True, preexec_fn=die_with_parent,
        )
    try:
        for d in site.devices.values():
            a = address_of(d)
            if not wait_tcp(a.host, a.port, 30):
                raise SystemExit(f"simulator {d.id} not listening; see {log_path}")
        yield
    finally:
        stop_process(proc, "simulator", timeout_s=10)


def address_of(device: Device) -> ModbusAddress:
    assert isinstance(device.config.address, ModbusAddress)
    return device.config.address


def profile_of(device: Device) -> ModbusProfile:
    assert isinstance(device.profile, ModbusProfile)
    return device.profile


def make_readers(site: Site, mode: str) -> list[ModbusReader]:
    readers = [ModbusReader(d.id, address_of(d), profile_of(d).points, timeout_s=TIMEOUT_S,
                            fill=MODES[mode]) for d in site.devices.values()]
    if mode == "naive":
        for r, d in zip(readers, site.devices.values(), strict=True):
            if len(r.blocks) != len(profile_of(d).points):
                raise SystemExit(f"naive plan of {d.id} merges points: {r.blocks}")
    return readers


async def read_checked(reader: ModbusReader, names: frozenset[str]) -> float:
    t0 = time.perf_counter()
    reading = await reader.read()
    elapsed = time.perf_counter() - t0
    if reading.bad or set(reading.values) != names:
        raise SystemExit(f"{reader.device_id}: bad {sorted(reading.bad)}, "
                         f"missing {sorted(names - set(reading.values))}")
    return elapsed


async def static_check(site: Site) -> None:
    """One device per profile with fixed values: both plans must read the same values."""
    for kind in TYPES:
        device = next(d for d in site.devices.values() if d.type == kind)
        port = free_port()
        address = ModbusAddress(port=port, unit=address_of(device).unit)
        model = build_model(kind, seed=seed_for(device.id))
        model.step(0.0)
        fixed = Device(device.config.model_copy(update={"address": address}),
                       device.building, device.gateway, device.profile)
        async with ModbusDeviceServer(fixed, model.points()):
            readings = {}
            for mode, fill in MODES.items():
                reader = ModbusReader(device.id, address, profile_of(device).points,
                                      timeout_s=TIMEOUT_S, fill=fill)
                try:
                    readings[mode] = await reader.read()
                finally:
                    await reader.close()
        planned, naive = readings["planned"], readings["naive"]
        if planned.bad or naive.bad or planned.values != naive.values:
            raise SystemExit(f"{kind}: planned {planned} differs from naive {naive}")


async def run_cycles(site: Site, stats: Stats, seconds: float) -> None:
    readers = make_readers(site, stats.mode)
    names = {r.device_id: frozenset(p.name for p in profile_of(site.devices[r.device_id]).points)
             for r in readers}
    stats.devices = len(readers)
    stats.requests_per_cycle = sum(len(r.blocks) for r in readers)
    try:
        await asyncio.gather(*(read_checked(r, names[r.device_id]) for r in readers))  # connect
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(read_checked(r, names[r.device_id]),
                                        name=f"poll[{r.device_id}]") for r in readers]
            stats.latencies_s += [t.result() for t in tasks]
            stats.cycles += 1
        stats.seconds += time.perf_counter() - t0
        for i in range(SOLO_POLLS // 2):
            r = readers[i % len(readers)]
            stats.solo_s.append(await read_checked(r, names[r.device_id]))
    finally:
        for r in readers:
            await r.close()


def ms(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(all_stats: Sequence[Stats]) -> None:
    print(f"{'mode':<8} {'req/cycle':>9} {'req/poll':>8} {'cycles/s':>9} {'polls/s':>8} "
          f"{'poll p50 ms':>11} {'poll p95 ms':>11} {'alone p50 ms':>12}")
    for s in all_stats:
        print(f"{s.mode:<8} {s.requests_per_cycle:>9} {s.requests_per_poll:>8.1f} "
              f"{s.cycles_per_s:>9.1f} {s.polls_per_s:>8.0f} "
              f"{ms(s.latencies_s, 0.5):>11.2f} {ms(s.latencies_s, 0.95):>11.2f} "
              f"{statistics.median(s.solo_s) * 1000:>12.2f}")


async def run(args: argparse.Namespace, work: Path) -> None:
    load = os.getloadavg()[0]
    site = write_site(work, args.devices)
    await static_check(site)
    stats = {mode: Stats(mode) for mode in MODES}
    with simulators(site, work):
        for _ in range(2):  # two rounds, modes alternating, so drift hits both alike
            for mode in MODES:
                await run_cycles(site, stats[mode], args.seconds / 2)
    planned, naive = stats["planned"], stats["naive"]
    print(f"{args.devices} devices ({', '.join(TYPES)} alternating) served by `facility "
          f"simulate` in a child process; {args.seconds:.0f} s of back-to-back poll cycles "
          f"per mode; {os.cpu_count()} CPUs, load average {load:.1f} at start; static check: "
          f"planned == naive readings")
    print_table([planned, naive])
    print(f"RESULT planned_requests_per_poll={planned.requests_per_poll:.1f} "
          f"naive_requests_per_poll={naive.requests_per_poll:.1f} "
          f"planned_polls_per_s={planned.polls_per_s:.0f} "
          f"naive_polls_per_s={naive.polls_per_s:.0f} "
          f"planned_cycles_per_s={planned.cycles_per_s:.1f} "
          f"naive_cycles_per_s={naive.cycles_per_s:.1f} "
          f"speedup={planned.polls_per_s / naive.polls_per_s:.1f} devices={args.devices}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=10, help="simulated devices (K)")
    p.add_argument("--seconds", type=float, default=20.0, help="poll-cycle time per mode")
    args = p.parse_args()
    if not 2 <= args.devices <= 200 or not 0 < args.seconds <= 120:
        p.error("--devices must be 2..200 and --seconds 0..120")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-modbus-"))
    try:
        asyncio.run(asyncio.wait_for(run(args, work), RUN_TIMEOUT_S))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
