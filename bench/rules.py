"""Rules benchmark: rule evaluations per second of the pure engine, and the latency from a
telemetry message published through mosquitto to the alarm event on the alarms topic, p50 and
p99, while a background publisher floods the rules service with telemetry.

1. engine: one day's worth of the demo estate's telemetry (the simulator models of both
   buildings, 0.5 s steps) is fed to ``Engine.evaluate``. The naive baseline evaluates every
   rule of the device on every message; the service's way passes the changed points, so only
   the rules reading one of them run. Figures: rule evaluations/s (naive), messages/s both ways.
2. latency: a private PostgreSQL and mosquitto on 127.0.0.1 (free ports, stopped by pid at the
   end), the rules service in this process, a background publisher in a child process
   (paho, QoS 0, 13-point switchgear snapshots with changing voltages, paced to a target of
   100k points/s across 200 devices), and a probe: a switchgear of its own loses and regains
   power every 0.3 s (QoS 1); latency = publish -> the ``alarm.raised``/``alarm.repeat``
   event received on facility/v1/bench/alarms. The background rate is what the rules service
   actually consumed: the target (100k points/s) when the service consumed at least 95 % of
   it in a saturation run, else 80 % of what it consumed. All processes share the CPUs.

With BENCH_MQTT_SECURE=1 the broker runs as in production (TLS, one login per identity,
the ACL: stack/embedded/secure_broker.py) and every client logs in: the background
publisher as gateway gw-bg, the probe as gw-probe, its subscriber and the service as rules.

Ends with ``RESULT evaluations_per_s=... alarm_latency_p50_ms=... alarm_latency_p99_ms=...
background_points_per_s=...``. Usage: .venv/bin/python bench/rules.py"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file is named like
# the rules package: put the project root there instead.
if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import yaml

from facility import topics
from facility.db.migrate import migrate
from facility.messages import Telemetry, encode
from facility.mqtt import MqttClient
from facility.mqtt_endpoint import MqttEndpoint
from facility.ports import free_port
from facility.procedures import load_procedures
from facility.site import Site, load_site
from facility.topics import TopicKind
from rules.current import CurrentValues
from rules.definitions import site_rules
from rules.engine import Engine
from rules.engine_types import EngineState, TelemetryInput
from rules.handling import RulesService
from rules.service import run_rules
from simulators.estate import Estate
from simulators.models import build_model, seed_for
from stack.broker_config import gateway_user, rules_user
from stack.embedded.broker import Broker
from stack.embedded.postgres import PostgresServer
from stack.embedded.secure_broker import SecureBroker, secure_broker

ROOT = Path(__file__).resolve().parent.parent
SITE_ID = "bench"
BG_DEVICES = 200
TARGET_POINTS_PER_S = 100_000
POINTS_PER_MESSAGE = 13
SATURATION_S = 16.0
BACKGROUND_S = 60.0  # the probes end it; the publisher stops by itself after this
PROBES = 100
SECURE = os.environ.get("BENCH_MQTT_SECURE") == "1"
POWER = {"voltage_l1": 231.0, "voltage_l2": 229.5, "voltage_l3": 230.2,
         "incoming_breaker_closed": True}
NO_POWER = {"voltage_l1": 0.0, "voltage_l2": 0.0, "voltage_l3": 0.0,
            "incoming_breaker_closed": False}

# The background publisher, run as a child process: paho only, pre-encoded payloads.
PUBLISHER = r"""
import json, os, signal, ssl, sys, time
import paho.mqtt.client as paho
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
from paho.mqtt.enums import CallbackAPIVersion
port, site, devices = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rate, seconds = float(sys.argv[4]), float(sys.argv[5])
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bg", protocol=paho.MQTTv5)
if os.environ.get("FACILITY_MQTT_USERNAME"):  # BENCH_MQTT_SECURE: the gateway's login, TLS
    with open(os.environ["FACILITY_MQTT_PASSWORD_FILE"]) as f:
        c.username_pw_set(os.environ["FACILITY_MQTT_USERNAME"], f.read().strip())
    c.tls_set_context(ssl.create_default_context(cafile=os.environ["FACILITY_MQTT_CA_FILE"]))
c.connect("127.0.0.1", port); c.loop_start(); time.sleep(0.5)
topics = [f"facility/v1/{site}/gw-bg/bg-{i:03d}/telemetry" for i in range(devices)]
def payload(i, k):
    v = 228.0 + (k % 7) * 0.7
    pts = {"voltage_l1": v, "voltage_l2": v + 0.3, "voltage_l3": v - 0.2,
           "current_l1": 120.0 + k % 5, "current_l2": 121.0, "current_l3": 119.0,
           "active_power_kw": 80.0 + k % 3, "power_factor": 0.93, "energy_kwh": 500000 + k,
           "transformer_temp_c": 50.0, "incoming_breaker_closed": True,
           "feeder_1_breaker_closed": True, "feeder_2_breaker_closed": True}
    return json.dumps({"ts": "2026-01-01T00:00:00.000Z", "seq": k, "session": "bg",
                       "points": pts}).encode()
variants = [[payload(i, k) for k in range(7)] for i in range(devices)]
sent, start, k = 0, time.monotonic(), 0
while time.monotonic() - start < seconds and not stop:
    for i in range(devices):
        c.publish(topics[i], variants[i][k % 7], qos=0)
        sent += 1
    k += 1
    ahead = sent / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(sent, time.monotonic() - start, flush=True)
c.loop_stop()
"""


# --- 1. the pure engine ----------------------------------------------------------------

def estate_inputs(site: Site, seconds: float) -> list[TelemetryInput]:
    models = {d.id: build_model(d.type, seed=seed_for(d.id)) for d in site.devices.values()}
    estate = Estate(models, {d.id: d.building for d in site.devices.values()})
    values = CurrentValues()
    inputs: list[TelemetryInput] = []
    t = 0.0
    while t < seconds:
        estate.step(t)
        for dev, model in models.items():
            msg = Telemetry(ts=datetime.now(UTC), seq=0, session="s", points=dict(model.points()))
            vals, changed = values.merge(dev, msg)
            inputs.append(TelemetryInput(dev, vals, False, changed))
        t += 0.5
    return inputs


def bench_engine(site: Site) -> dict[str, float]:
    engine = Engine.for_site(site_rules(site, load_procedures(ROOT / "procedures")), site)
    inputs = estate_inputs(site, 1800)
    naive = [TelemetryInput(i.device, i.values) for i in inputs]
    per_device = {d: sum(1 for r in engine.rules if r.input == "telemetry" and
                         (not r.device_types or site.devices[d].type in r.device_types))
                  for d in site.devices}
    out: dict[str, float] = {}
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for name, batch in (("naive", naive), ("changed", inputs)):
        state = EngineState()
        start = time.perf_counter()
        for n, inp in enumerate(batch):
            state, _ = engine.evaluate(state, inp, t0 + timedelta(seconds=n * 0.05))
        elapsed = time.perf_counter() - start
        out[f"{name}_messages_per_s"] = len(batch) / elapsed
        if name == "naive":
            out["evaluations_per_s"] = sum(per_device[i.device] for i in batch) / elapsed
    out["messages"] = len(inputs)
    return out


# --- 2. latency under background load -------------------------------------------------

def write_site(work: Path) -> Site:
    def switch(name: str, port: int) -> dict[str, Any]:
        return {"id": name, "type": "switchgear", "profile": "switchgear",
                "address": {"protocol": "modbus", "port": port}}

    raw = {
        "site": SITE_ID, "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw-bg"}, {"id": "gw-probe"}],
        "buildings": [
            {"id": "bg", "gateway": "gw-bg",
             "devices": [switch(f"bg-{i:03d}", 20000 + i) for i in range(BG_DEVICES)]},
            {"id": "probe", "gateway": "gw-probe", "devices": [switch("probe", 19999)]},
        ],
        "rules": {"power_outage": {"on_delay_s": 0, "off_delay_s": 0}},
    }
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_site(path)


@dataclass(frozen=True)
class Mqtt:
    """The bench's broker, and each client's endpoint (a login with BENCH_MQTT_SECURE=1)."""

    broker: Broker
    secure: SecureBroker | None

    def endpoint(self, user: str) -> str | MqttEndpoint:
        return self.broker.url if self.secure is None else self.secure.endpoint(user)

    def env(self, user: str) -> dict[str, str]:
        return {} if self.secure is None else self.secure.env(user)


@contextlib.contextmanager
def servers(work: Path, site: Site) -> Iterator[tuple[str, Mqtt]]:
    pg = PostgresServer(work / "pgdata", free_port(), settings={"max_connections": "50"})
    pg.start()
    secure = secure_broker(work, [site], free_port()) if SECURE else None
    broker = secure.broker if secure else Broker(work / "broker", free_port())
    try:
        broker.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "bench"')
        migrate(pg.url("bench"))
        yield pg.url("bench"), Mqtt(broker, secure)
    finally:
        broker.stop()
        pg.stop()


async def probe_latency(site: Site, mqtt: Mqtt) -> list[float]:
    """Toggle the probe's power; the time from publish to the alarm event, in ms."""
    topic = topics.device_topic(TopicKind.TELEMETRY, SITE_ID, "gw-probe", "probe")
    latencies: list[float] = []
    session = f"p{time.monotonic_ns()}"  # each run a gateway session of its own (seq from 0)
    async with MqttClient(mqtt.endpoint(gateway_user(SITE_ID, "gw-probe")),
                          "bench-probe-pub") as pub, \
            MqttClient(mqtt.endpoint(rules_user(SITE_ID)), "bench-probe-sub") as sub:
        await pub.wait_connected(10)
        await sub.wait_connected(10)
        await sub.subscribe(topics.alarms(SITE_ID))
        await sub.wait_subscribed(10)
        events = sub.messages()
        for seq in range(PROBES * 2):
            lost = seq % 2 == 0
            msg = Telemetry(ts=datetime.now(UTC), seq=seq, session=session,
                            points=dict(NO_POWER if lost else POWER))
            start = time.perf_counter()
            await pub.publish(topic, encode(msg), qos=1, timeout_s=10)
            want = ("alarm.raised", "alarm.repeat") if lost else ("alarm.cleared",)
            async with asyncio.timeout(30):
                while True:
                    ev = json.loads((await anext(events)).payload)
                    if ev["event"] in want and ev.get("device") == "probe":
                        break
            if lost:
                latencies.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.15)
    return latencies


async def flood(svc: RulesService, mqtt: Mqtt, msgs_per_s: float, seconds: float,
                measure: Any = None) -> tuple[float, float]:
    """Run the background publisher; (offered, consumed) points/s over its run, while
    ``measure`` (a coroutine) runs if given."""
    publisher = subprocess.Popen(  # noqa: ASYNC220 - a child that runs beside the loop
        [sys.executable, "-c", PUBLISHER, str(mqtt.broker.port), SITE_ID, str(BG_DEVICES),
         str(msgs_per_s), str(seconds)], stdout=subprocess.PIPE,
        env=os.environ | mqtt.env(gateway_user(SITE_ID, "gw-bg")))
    try:
        await asyncio.sleep(2)  # let the flood build up
        start_n, start_t = svc.messages, time.perf_counter()
        if measure is not None:
            await measure
        else:
            await asyncio.sleep(seconds - 4)
        consumed = (svc.messages - start_n) * POINTS_PER_MESSAGE / (time.perf_counter() - start_t)
        publisher.terminate()
        out, _ = await asyncio.to_thread(publisher.communicate, timeout=120)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()
    sent, sent_s = out.decode().split()
    return int(sent) * POINTS_PER_MESSAGE / float(sent_s), consumed


async def drained(svc: RulesService) -> None:
    """Wait until the rules service has worked off any backlog."""
    last = -1
    while svc.messages != last:
        last = svc.messages
        await asyncio.sleep(1.0)


async def bench_latency(site: Site, database_url: str, mqtt: Mqtt) -> dict[str, float]:
    services: list[RulesService] = []
    ready = asyncio.Event()
    task = asyncio.create_task(run_rules(
        site, database_url, mqtt.endpoint(rules_user(SITE_ID)),
        procedures_dir=ROOT / "procedures", ready=ready, on_service=services.append))
    try:
        async with asyncio.timeout(60):
            await ready.wait()
        svc = services[0]
        idle = await probe_latency(site, mqtt)
        # A: saturation at the target rate: what the rules service can consume at most
        offered_max, capacity = await flood(
            svc, mqtt, TARGET_POINTS_PER_S / POINTS_PER_MESSAGE, SATURATION_S)
        await drained(svc)
        # B: latency under the target background if the service sustains it (consumes 95 %
        # of it at saturation), else under 80 % of what it consumes
        sustained = capacity >= 0.95 * TARGET_POINTS_PER_S
        rate = (TARGET_POINTS_PER_S if sustained else 0.8 * capacity) / POINTS_PER_MESSAGE
        lat: list[float] = []

        async def probes() -> None:
            lat.extend(await probe_latency(site, mqtt))

        offered, consumed = await flood(svc, mqtt, rate, BACKGROUND_S, probes())
        return {
            "idle_p50_ms": statistics.median(idle),
            "p50_ms": statistics.median(lat),
            "p99_ms": statistics.quantiles(lat, n=100)[98],
            "max_ms": max(lat),
            "saturation_offered": offered_max, "capacity": capacity,
            "background_points_per_s": consumed, "offered_points_per_s": offered,
        }
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    engine = bench_engine(load_site(ROOT / "sites" / "demo.yaml"))
    print(f"engine ({engine['messages']:.0f} demo-estate messages):")
    print(f"  naive (every rule of the device): {engine['naive_messages_per_s']:>10,.0f} msg/s"
          f"  {engine['evaluations_per_s']:>10,.0f} rule evaluations/s")
    print(f"  changed points only (service):    {engine['changed_messages_per_s']:>10,.0f} msg/s")
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        work = Path(tmp)
        site = write_site(work)
        with servers(work, site) as (url, mqtt):
            lat = asyncio.run(bench_latency(site, url, mqtt))
    if SECURE:
        print("broker: TLS, one login per identity, the ACL (BENCH_MQTT_SECURE=1)")
    print(f"latency publish -> alarm event, idle: p50 {lat['idle_p50_ms']:.1f} ms")
    print(f"saturation: {lat['saturation_offered']:,.0f} points/s offered, "
          f"{lat['capacity']:,.0f} points/s consumed by rules")
    print(f"under background ({lat['offered_points_per_s']:,.0f} points/s offered, "
          f"{lat['background_points_per_s']:,.0f} points/s consumed by rules):"
          f" p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms")
    print(f"RESULT evaluations_per_s={engine['evaluations_per_s']:.0f}"
          f" alarm_latency_p50_ms={lat['p50_ms']:.1f} alarm_latency_p99_ms={lat['p99_ms']:.1f}"
          f" background_points_per_s={lat['background_points_per_s']:.0f}")


if __name__ == "__main__":
    main()
