"""Simulator load mode at 2,000 devices: CPU and memory of the `facility simulate --load`
process while a plain pymodbus client polls a sample of its devices every second.

Runs the simulator twice in a subprocess: as shipped (each device's live points re-encoded
every 5 s, one slice of the devices per 1 s tick) and a naive baseline that re-encodes every
device's live points every second. For each: start-up time until the site file appears,
the simulator's CPU % (from /proc/PID/stat over the measuring window) and RSS, and the
sample poll's success rate and mean request latency. Ends with one RESULT line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from facility.site import ModbusAddress, load_site

DEVICES = 2000
SAMPLE_PORTS = 10  # the sample polled: every unit on 10 ports = 200 devices x 50 points
WARMUP_S = 5.0
MEASURE_S = 20.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def read(c: AsyncModbusTcpClient, fc: int, count: int, unit: int) -> Any:
    if fc == 4:
        return await c.read_input_registers(0, count=count, device_id=unit)
    if fc == 3:
        return await c.read_holding_registers(0, count=count, device_id=unit)
    return await c.read_discrete_inputs(0, count=count, device_id=unit)


async def poll_port(port: int, units: list[int], until: float, stats: dict[str, float]) -> None:
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await c.connect()
    loop = asyncio.get_running_loop()
    next_cycle = loop.time()
    try:
        while loop.time() < until:
            for unit in units:
                for fc, count in ((4, 61), (3, 11), (2, 4)):
                    t0 = loop.time()
                    try:
                        ok = not (await read(c, fc, count, unit)).isError()
                    except Exception:
                        ok = False
                    stats["requests"] += 1
                    stats["ok"] += ok
                    stats["latency_s"] += loop.time() - t0
            next_cycle += 1.0
            await asyncio.sleep(max(0.0, next_cycle - loop.time()))
    finally:
        c.close()


async def poll_sample(site_path: Path, seconds: float) -> dict[str, float]:
    site = load_site(site_path)
    by_port: dict[int, list[int]] = {}
    for d in site.devices.values():
        a = d.config.address
        if isinstance(a, ModbusAddress):
            by_port.setdefault(a.port, []).append(a.unit)
    stats = {"requests": 0.0, "ok": 0.0, "latency_s": 0.0}
    until = asyncio.get_running_loop().time() + seconds
    ports = sorted(by_port)[:SAMPLE_PORTS]
    await asyncio.gather(*(poll_port(p, by_port[p], until, stats) for p in ports))
    return stats


def run(label: str, update_period_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        site_path = Path(tmp) / "load.yaml"
        cmd = [sys.executable, "-m", "stack.cli", "simulate", "--load", str(DEVICES),
               "--write-site", str(site_path), "--update-period", str(update_period_s),
               "--log-level", "WARNING"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd)
        try:
            while not site_path.exists():
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise SystemExit(f"{label}: simulator did not start")
                time.sleep(0.1)
            startup_s = time.monotonic() - t0
            asyncio.run(poll_sample(site_path, WARMUP_S))
            cpu0, w0 = cpu_seconds(proc.pid), time.monotonic()
            stats = asyncio.run(poll_sample(site_path, MEASURE_S))
            cpu_pct = 100 * (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - w0)
            rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {
        "startup_s": startup_s, "cpu_pct": cpu_pct, "rss_mb": rss,
        "ok_pct": 100 * stats["ok"] / max(1, stats["requests"]),
        "latency_ms": 1000 * stats["latency_s"] / max(1, stats["requests"]),
        "requests_per_s": stats["requests"] / MEASURE_S,
    }
    print(f"{label:<34} start-up {startup_s:5.1f} s  CPU {cpu_pct:5.1f} %  RSS {rss:6.1f} MB  "
          f"sample poll {result['requests_per_s']:.0f} req/s, {result['ok_pct']:.1f} % ok, "
          f"{result['latency_ms']:.1f} ms mean")
    return result


def main() -> None:
    print(f"{DEVICES} Modbus devices (load_meter, 50 points) on {DEVICES // 20} ports + 20 "
          f"BACnet panels; polling {SAMPLE_PORTS * 20} devices (all points) every 1 s")
    shipped = run("shipped (update every 5 s)", 5.0)
    naive = run("naive (update every 1 s)", 1.0)
    print(f"RESULT devices={DEVICES} cpu_pct={shipped['cpu_pct']:.1f} "
          f"rss_mb={shipped['rss_mb']:.0f} startup_s={shipped['startup_s']:.1f} "
          f"naive_cpu_pct={naive['cpu_pct']:.1f} poll_ok_pct={shipped['ok_pct']:.1f} "
          f"poll_latency_ms={shipped['latency_ms']:.1f}")


if __name__ == "__main__":
    main()
