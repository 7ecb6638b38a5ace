"""Modbus RTU line throughput: polls per second one line of ``--units`` units sustains at
``--baud`` through the gateway's RtuLine and ModbusReader, against the ideal the wire
allows (the characters of every request and reply at the baud rate plus a t3.5 silent
interval after each frame, nothing else), and again with one unit of the line silent.

The line is the simulators' serial device server (RTU frames over TCP, each frame delayed
by its time on the wire at the baud rate, one frame at a time) served by
``facility simulate`` in a child process on a free 127.0.0.1 port, stopped by pid at the
end, so the device side does not share the reader's CPU. Every unit is a switchgear
(profiles/switchgear.yaml: one poll is two requests, 20 input registers and 3 discrete
inputs). One task per unit polls back to back for ``--seconds`` (the line's lock makes them
take turns, as the gateway's pollers do); every reading must be complete. In the second
round unit 1 is not served: it times out (``--timeout`` per request) and is then backed off
as in the gateway, and the other units' polls are counted.
Usage: .venv/bin/python bench/rtu.py [--units 10] [--baud 9600] [--seconds 20]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the gateway package, not bench/gateway.py

from facility.ports import free_port, wait_tcp  # noqa: E402
from facility.profiles import ModbusProfile  # noqa: E402
from facility.site import ModbusRtuAddress, load_site  # noqa: E402
from gateway.errors import DeviceError  # noqa: E402
from gateway.modbus import ModbusReader  # noqa: E402
from gateway.rtu_line import RtuLine, ideal_polls_per_s  # noqa: E402
from stack.embedded.lifetime import die_with_parent, stop_process  # noqa: E402


def write_site(path: Path, port: int, units: list[int], baud: int, timeout_s: float) -> Path:
    line = {"id": "line-1", "server": f"127.0.0.1:{port}", "baudrate": baud,
            "timeout_s": timeout_s}
    devices = [{"id": f"unit-{u}", "type": "switchgear", "profile": "switchgear",
                "address": {"protocol": "modbus-rtu", "line": "line-1", "unit": u}}
               for u in units]
    raw = {"site": "bench", "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw", "lines": [line]}],
           "buildings": [{"id": "a", "gateway": "gw", "devices": devices}]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


async def poll_line(site_path: Path, seconds: float) -> tuple[dict[str, int], float, Any]:
    """Polls per unit in ``seconds`` of back-to-back polling, and the elapsed time."""
    site = load_site(site_path)
    gw = site.gateway("gw")
    line = RtuLine(gw.line("line-1"))
    readers = []
    for d in site.devices.values():
        assert isinstance(d.config.address, ModbusRtuAddress)
        assert isinstance(d.profile, ModbusProfile)
        readers.append(ModbusReader(d.id, d.config.address, d.profile.points,
                                    timeout_s=line.config.timeout_s, line=line))
    counts = {r.device_id: 0 for r in readers}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def run(reader: ModbusReader) -> None:
        while loop.time() < end:
            try:
                reading = await reader.read(None)
            except DeviceError:
                await asyncio.sleep(0.05)  # a silent unit: the gateway's next tick
                continue
            assert not reading.bad and reading.complete, reading.bad
            counts[reader.device_id] += 1

    started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for r in readers:
            tg.create_task(run(r), name=f"poll[{r.device_id}]")
    elapsed = time.monotonic() - started
    await line.close()
    return counts, elapsed, (line, readers[0].blocks)


def serve(site_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "simulate", "--site", str(site_path),
             "--log-level", "WARNING"], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    if not wait_tcp("127.0.0.1", port, 30):
        stop_process(proc, "simulator")
        raise SystemExit(f"the simulated line did not listen; see {log}")
    return proc


async def round_(work: Path, name: str, units: int, served: list[int], baud: int,
                 seconds: float, timeout_s: float) -> tuple[dict[str, int], float, Any]:
    port = free_port()
    all_units = list(range(1, units + 1))
    sim = write_site(work / f"sim-{name}.yaml", port, served, baud, timeout_s)
    polled = write_site(work / f"gw-{name}.yaml", port, all_units, baud, timeout_s)
    proc = serve(sim, port, work / f"simulate-{name}.log")
    try:
        return await poll_line(polled, seconds)
    finally:
        stop_process(proc, "simulator")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, default=10)
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=0.3, help="per request (s)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-rtu-") as tmp:
        work = Path(tmp)
        units = list(range(1, args.units + 1))
        counts, elapsed, (line, blocks) = await round_(
            work, "all", args.units, units, args.baud, args.seconds, args.timeout)
        requests = [(b.table, b.count) for b in blocks]
        ideal = ideal_polls_per_s(line.config, requests)
        rate = sum(counts.values()) / elapsed
        dead_counts, dead_elapsed, (dead_line, _) = await round_(
            work, "dead", args.units, units[1:], args.baud, args.seconds, args.timeout)
        healthy = {k: v for k, v in dead_counts.items() if k != "unit-1"}
        dead_rate = sum(healthy.values()) / dead_elapsed
    per_poll = " + ".join(f"{t.value}[{n}]" for t, n in requests)
    print(f"line: {args.units} units at {args.baud} baud, {line.config.bits_per_char} bits "
          f"per character, t3.5 = {line.config.gap_s * 1000:.2f} ms; one poll = {per_poll}")
    print(f"all units answer: {sum(counts.values())} polls in {elapsed:.1f} s = "
          f"{rate:.2f} polls/s on the line ({rate / args.units:.2f} per unit); ideal "
          f"{ideal:.2f} polls/s ({rate / ideal * 100:.0f}% of it)")
    print(f"unit 1 silent: {sum(healthy.values())} polls of the other {args.units - 1} in "
          f"{dead_elapsed:.1f} s = {dead_rate:.2f} polls/s; the silent unit cost "
          f"{dead_line.counters.timeouts} timeouts of {args.timeout:g} s; the line's load "
          f"{dead_line.counters.load:.2f}")
    print(f"RESULT units={args.units} baud={args.baud} polls_per_s={rate:.2f} "
          f"ideal_polls_per_s={ideal:.2f} dead_unit_polls_per_s={dead_rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
