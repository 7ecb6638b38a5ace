"""Metrics: what prometheus_client costs the services, and why they keep plain counters.

Two ways to count a gateway's per-device polls, measured in the same run:

- naive: a prometheus_client ``Counter`` with a ``device`` label, ``.labels(d).inc()`` on the
  hot path (what one would write first; each ``inc`` takes the child's lock);
- ours: a plain ``int`` attribute bumped on the hot path (gateway.counters), turned into metric
  families only at scrape time by gateway.metrics.collect through prometheus_client.

Also the scrape itself: the exposition of a gateway with ``--devices`` devices (every family
of gateway.metrics), timed over repeated renders. No I/O.
Usage: .venv/bin/python bench/metrics.py [--devices N] [--increments N]"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # before bench/gateway.py

from prometheus_client import CollectorRegistry, Counter

from facility.metrics_http import text
from gateway.counters import GatewayCounters
from gateway.metrics import Gauges, collect


def per_increment_ns(devices: list[str], increments: int) -> tuple[float, float]:
    registry = CollectorRegistry()
    polls = Counter("bench_device_polls", "polls", ["device"], registry=registry)
    children = [polls.labels(d) for d in devices]  # label lookup cached: the best case
    start = time.perf_counter_ns()
    for i in range(increments):
        children[i % len(children)].inc()
    naive = (time.perf_counter_ns() - start) / increments
    counters = GatewayCounters()
    ours = [counters.device(d) for d in devices]
    start = time.perf_counter_ns()
    for i in range(increments):
        ours[i % len(ours)].polls += 1
    plain = (time.perf_counter_ns() - start) / increments
    return naive, plain


def scrape_ms(devices: list[str], rounds: int) -> tuple[float, int]:
    counters = GatewayCounters(polls=10**6)
    for d in devices:
        counters.device(d).polls = 1000
    gauges = Gauges(queue_depth=0, inflight=3, devices=len(devices))
    start = time.perf_counter()
    for _ in range(rounds):
        body = text(lambda: collect("gw-bench", counters, gauges))
    return (time.perf_counter() - start) / rounds * 1000, len(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--increments", type=int, default=2_000_000)
    args = ap.parse_args()
    devices = [f"dev-{i}" for i in range(args.devices)]
    naive, plain = per_increment_ns(devices, args.increments)
    ms, size = scrape_ms(devices, 20)
    print(f"hot path, one increment:  prometheus_client Counter.labels().inc() {naive:7.1f} ns")
    print(f"                          plain int attribute                        {plain:7.1f} ns")
    print(f"scrape of {args.devices} devices: {ms:.1f} ms, {size} bytes")
    # a 2,000-device gateway at 1 s counts about 4 things a poll: 8,000 increments a second
    print(f"RESULT devices={args.devices} naive_inc_ns={naive:.1f} plain_inc_ns={plain:.1f} "
          f"naive_core_share_pct={naive * 8000 / 1e7:.3f} scrape_ms={ms:.1f} "
          f"scrape_bytes={size}")


if __name__ == "__main__":
    main()
