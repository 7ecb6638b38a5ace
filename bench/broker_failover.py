"""The kill test of the centre's broker engines (not a test; root; starts everything itself).

Four network-namespace machines on a private bridge (stack.centre.machines): a broker node
on m1, m2 and m3, the clients on m4. For each engine in ``--engines`` (RabbitMQ 3.10 with
quorum-queue sessions, NATS 2.9 JetStream with ``stream_replicas: 3``, and as the naive
baseline a single mosquitto on m1 with persistence):

1. throughput: one QoS 1 publisher (``facility.mqtt``, the gateway's client; 200-byte
   payloads, MQTT 3.1.1, TLS, ``--window`` in flight) as fast as the broker acknowledges,
   for ``--seconds``, with the persistent-session subscriber (``facility.mqtt_session``, the
   ingest/rules client) receiving; PUBACKs per second;
2. kill: the same pair at ``--rate`` messages/s; the subscriber's URL list starts with m1, the
   publisher's with m2; after ``--before-s`` the machine the subscriber is on is killed the
   hard way (link cut, every process SIGKILLed); publishing goes on for ``--after-s``; then
   the subscriber is given until every acknowledged seq has arrived (or ``--drain-s``).

Counted from the probes' seq files (stack.centre.probe): ``lost`` (acknowledged to the
publisher, never received), ``duplicated`` (received more than once: at-least-once allows
it, the consumers are idempotent), ``failover_s`` (from the kill until the subscriber
receives again on a new connection), ``pub_stall_s`` (from the kill until the next PUBACK).
Ends with ``RESULT rabbitmq_lost=... rabbitmq_duplicated=... rabbitmq_failover_s=...
rabbitmq_pubacks_per_s=... nats_... mosquitto_...``.
Usage: sudo .venv/bin/python bench/broker_failover.py [--engines rabbitmq,nats,mosquitto]"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facility.site import Site, load_site  # noqa: E402
from stack.broker_config import gateway_user, ingest_user  # noqa: E402
from stack.centre.broker_cluster import start_broker  # noqa: E402
from stack.centre.machines import Centre, Machine  # noqa: E402
from stack.centre.probe import ProbeRecord  # noqa: E402

BROKERS = ["m1", "m2", "m3"]


class Clients:
    """The probe processes on the client machine for one engine."""

    def __init__(self, client: Machine, work: Path, env_sub: dict[str, str],
                 env_pub: dict[str, str], topic: str, tag: str) -> None:
        self.client, self.work, self.topic, self.tag = client, work, topic, tag
        self.env_sub, self.env_pub = env_sub, env_pub
        self.sub_file, self.pub_file = work / f"{tag}-sub.txt", work / f"{tag}-pub.txt"

    def start_sub(self, client_id: str) -> None:
        self.sub = self.client.start(f"{self.tag}-sub", self._argv(
            "subscribe", client_id, self.sub_file), env=self.env_sub, cwd=ROOT)

    def start_pub(self, *extra: str) -> None:
        self.pub = self.client.start(f"{self.tag}-pub", [*self._argv(
            "publish", f"{self.tag}-pub", self.pub_file), *extra], env=self.env_pub, cwd=ROOT)

    def _argv(self, role: str, client_id: str, out: Path) -> list[str]:
        return [sys.executable, "-m", "stack.centre.probe", role, "--topic", self.topic,
                "--client-id", client_id, "--out", str(out)]

    def record(self) -> ProbeRecord:
        return ProbeRecord.read(self.pub_file, self.sub_file)

    def wait(self, what: str, check: object, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return True
            time.sleep(0.2)
        print(f"  ({what}: not within {timeout_s:.0f} s)")
        return False

    def stop(self, proc_name: str) -> None:
        proc = getattr(self, proc_name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except Exception:
                proc.kill()


def env_for(base: dict[str, str], url: str) -> dict[str, str]:
    return os.environ | base | {"FACILITY_MQTT_URL": url, "FACILITY_LOG_LEVEL": "WARNING"}


def run_engine(engine: str, centre: Centre, work: Path, site: Site,
               args: argparse.Namespace) -> dict[str, float]:
    gw = site.config.gateways[0].id
    topic = f"facility/v1/{site.id}/{gw}/probe/telemetry"
    if engine == "mosquitto":
        env_sub, env_pub, urls = mosquitto_on(centre.machine("m1"), work)
        sub_url = pub_url = urls
    else:
        broker = start_broker(centre, work / engine, engine=engine,  # type: ignore[arg-type]
                              sites=[site], machines=BROKERS)
        env_sub, env_pub = broker.env(ingest_user(site.id)), broker.env(
            gateway_user(site.id, gw))
        sub_url = broker.url(BROKERS)
        pub_url = broker.url(["m2", "m3", "m1"])
    client = centre.machine("m4")
    figures: dict[str, float] = {}
    # 1. throughput, nothing killed
    tp = Clients(client, work, env_for(env_sub, sub_url), env_for(env_pub, pub_url), topic,
                 f"{engine}-tp")
    tp.start_sub(f"ingest-{site.id}")
    tp.wait("subscriber connected", lambda: tp.record().connections, 60)
    tp.start_pub("--window", str(args.window), "--rate", "0")
    tp.wait("first PUBACK", lambda: tp.record().acked, 60)
    start = time.time()
    time.sleep(args.seconds)
    end = time.time()
    tp.stop("pub")
    tp.stop("sub")
    figures["pubacks_per_s"] = tp.record().ack_rate(start, end)
    # 2. kill the subscriber's machine under load
    kt = Clients(client, work, env_for(env_sub, sub_url), env_for(env_pub, pub_url), topic,
                 f"{engine}-kill")
    kt.start_sub(f"ingest-{site.id}-k")
    kt.wait("subscriber connected", lambda: kt.record().connections, 60)
    kt.start_pub("--window", "20", "--rate", str(args.rate))
    kt.wait("first PUBACK", lambda: kt.record().acked, 60)
    time.sleep(args.before_s)
    on = kt.record().connections[-1][0].split("//")[1].split(":")[0]
    victim = centre.by_address(on)
    killed_at = time.time()
    victim.kill()
    print(f"  {engine}: killed {victim.name} (the subscriber's node) at load {args.rate}/s")
    time.sleep(args.after_s)
    kt.stop("pub")
    kt.wait("every acknowledged seq received",
            lambda: not kt.record().lost, args.drain_s)
    rec = kt.record()
    kt.stop("sub")
    figures |= {"lost": len(rec.lost), "duplicated": rec.duplicated,
                "acked": len(rec.acked), "failover_s": rec.resumed_after(killed_at),
                "pub_stall_s": rec.ack_gap_after(killed_at)}
    victim.revive()
    return figures


def mosquitto_on(machine: Machine, work: Path) -> tuple[dict[str, str], dict[str, str], str]:
    """The baseline: one mosquitto (persistence on) on one machine, plain, anonymous."""
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener 1883 {machine.address}\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {work}/\nmax_inflight_messages "
                    "1000\nmax_queued_messages 1000000\nuser root\n")
    machine.start("mosquitto", ["/usr/sbin/mosquitto", "-c", str(conf)])
    env = {"FACILITY_MQTT_PROTOCOL": "3.1.1", "FACILITY_MQTT_KEEPALIVE_S": "3",
           "FACILITY_MQTT_CONNECT_TIMEOUT_S": "2"}
    time.sleep(1.0)  # mosquitto listens within milliseconds; the probes retry anyway
    return env, env, f"mqtt://{machine.address}:1883"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--engines", default="rabbitmq,nats,mosquitto")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--before-s", type=float, default=5.0)
    p.add_argument("--after-s", type=float, default=15.0)
    p.add_argument("--drain-s", type=float, default=60.0)
    p.add_argument("--keep", type=Path, help="keep the logs and seq files in this folder")
    args = p.parse_args()
    site = load_site(ROOT / "sites" / "demo.yaml")
    results: dict[str, dict[str, float]] = {}
    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory(prefix=f"broker-{engine}-") as tmp:
            work = Path(tmp) if args.keep is None else args.keep / engine
            work.mkdir(parents=True, exist_ok=True)
            with Centre.create(4, work) as centre:
                results[engine] = run_engine(engine, centre, work, site, args)
        print(f"{engine}: " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in results[engine].items()), flush=True)
    print("RESULT " + " ".join(
        f"{engine}_{k}={v:.2f}" if isinstance(v, float) else f"{engine}_{k}={v}"
        for engine, figures in results.items() for k, v in figures.items()
        if k in ("lost", "duplicated", "failover_s", "pub_stall_s", "pubacks_per_s")))


if __name__ == "__main__":
    main()
