"""The three-machine centre for bench/failover.py (not a test; root): machines m1-m3 as
network namespaces on a private bridge (``stack.centre.machines``) with Patroni/etcd
PostgreSQL on each (``stack.centre.database``), the clustered MQTT broker on each
(``stack.centre`` broker module), and ingest, rules and the API on two machines each
(``stack.centre.services``, ``--standby``): m1 ingest + API, m2 ingest + rules, m3 rules +
API, so that every kill takes some active instance with it. The field (simulators,
gateways, the bench's own probes) is a fourth machine that is never killed; this process's
main thread enters its namespace before the phase starts.

``--broker field-mosquitto`` replaces the broker cluster by one mosquitto on the field
machine (never killed): a look at the database's and the services' failover alone, not a
result."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import psycopg

from facility.mqtt_endpoint import MqttEndpoint
from facility.site import Site, load_site
from facility.users import ensure_demo_users
from stack.broker_config import ingest_user, rules_user
from stack.centre.broker_cluster import BrokerCluster, start_broker
from stack.centre.database import DatabaseCluster, centre_description, start_database
from stack.centre.description import DatabaseSpec, ServicesSpec
from stack.centre.machines import CLONE_NEWNET, Centre, Machine
from stack.centre.services import CentreServices, ServiceTargets
from stack.embedded.broker import require_mosquitto

log = logging.getLogger("bench.failover")
PLACEMENT = ServicesSpec(ingest=["m1", "m2"], rules=["m2", "m3"], api=["m1", "m3"],
                         api_port=8000)
PASSWORD = "bench failover password"


class Broker(Protocol):
    protocol: str

    @property
    def url(self) -> str: ...
    def endpoint(self, user: str) -> str | MqttEndpoint: ...
    def env(self, user: str) -> dict[str, str]: ...
    def restart(self, machine: str) -> None: ...
    def holds(self, machine: str) -> str: ...
    def close(self) -> None: ...


class ClusterBroker:
    """ha-broker's cluster (RabbitMQ or NATS) on m1-m3: TLS, one login per service."""

    protocol = "3.1.1"

    def __init__(self, cluster: BrokerCluster) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        return self.cluster.url()

    def endpoint(self, user: str) -> str | MqttEndpoint:
        # the bench's own clients wait longer than the services (2 s) for CONNACK and
        # SUBACK: a new session's quorum queue is made on three loaded nodes
        return self.cluster.endpoint(user, connect_timeout_s=10.0)

    def env(self, user: str) -> dict[str, str]:
        return self.cluster.env(user)

    def restart(self, machine: str) -> None:
        self.cluster.restart(machine)

    def holds(self, machine: str) -> str:
        return f"{self.cluster.engine} node"

    def close(self) -> None:
        pass  # the centre's close kills every node


class FieldMosquitto:
    """One mosquitto on the field machine: never killed (a dry run, not a result)."""

    protocol = "3.1.1"

    def __init__(self, field: Machine, work: Path) -> None:
        self.field = field
        self.dir = work / "field-mosquitto"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.field.address}:1883"

    def start(self) -> None:
        mosquitto = require_mosquitto()
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text("listener 1883 0.0.0.0\nallow_anonymous true\npersistence true\n"
                        f"persistence_location {self.dir}/\nmax_inflight_messages 1000\n"
                        "max_queued_messages 1000000\nuser root\n")
        self.proc = self.field.start("mosquitto", [mosquitto, "-c", str(conf)])
        time.sleep(1.0)  # its listener opens at once; the clients retry anyway

    def endpoint(self, user: str) -> str | MqttEndpoint:
        return self.url

    def env(self, user: str) -> dict[str, str]:
        return {}

    def restart(self, machine: str) -> None:
        pass

    def holds(self, machine: str) -> str:
        return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class CentreSetUp:
    name = "centre"

    def __init__(self, work: Path, broker_kind: str,
                 patroni: dict[str, int | None] | None = None) -> None:
        self.work = work
        self.broker_kind = broker_kind
        self.patroni = patroni or {}  # DatabaseSpec timings; None: ha-db's defaults
        self.victims = ["m1", "m2", "m3"]
        self.centre = Centre.create(3, work / "machines")
        self.field = self.centre.add_machine("field")
        self.db: DatabaseCluster | None = None
        self.broker: Broker | None = None
        self.site_id = ""
        self.services: CentreServices | None = None

    @property
    def mqtt_protocol(self) -> str:
        assert self.broker is not None
        return self.broker.protocol

    @property
    def database_url(self) -> str:
        assert self.db is not None
        return self.db.url()

    @property
    def mqtt_url(self) -> str:
        assert self.broker is not None
        return self.broker.url

    @property
    def api_urls(self) -> list[str]:
        assert self.services is not None
        return self.services.api_urls()

    def start(self, site_path: Path) -> None:
        site = load_site(site_path)
        self.site_id = site.id
        timings = {k: v for k, v in self.patroni.items() if v is not None}
        spec = DatabaseSpec.model_validate(
            {"machines": ["m1", "m2", "m3"], **timings}) if timings else None
        description = centre_description(self.centre, self.work / "data", spec=spec)
        self.db = start_database(self.centre, description)
        with psycopg.connect(self.db.url()) as conn:
            ensure_demo_users(conn, PASSWORD)
        self.broker = self._start_broker(site)
        self.services = CentreServices(self.centre, PLACEMENT, ServiceTargets(
            site_file=site_path, database_url=self.db.url(), mqtt_url=self.broker.url,
            mqtt_protocol=self.broker.protocol, service_env={
                "ingest": self.broker.env(ingest_user(site.id)),
                "rules": self.broker.env(rules_user(site.id))}), base_env=os.environ)
        self.services.start()
        self.services.wait_subscribed()  # the field starts after: nothing published before

    def _start_broker(self, site: Site) -> Broker:
        if self.broker_kind == "field-mosquitto":
            broker = FieldMosquitto(self.field, self.work)
            broker.start()
            return broker
        return ClusterBroker(start_broker(
            self.centre, self.work / "broker", engine=self.broker_kind,  # type: ignore[arg-type]
            sites=[site], machines=["m1", "m2", "m3"]))

    def endpoint(self, user: str) -> str | MqttEndpoint:
        assert self.broker is not None
        return self.broker.endpoint(user)

    def client_env(self, user: str) -> dict[str, str]:
        assert self.broker is not None
        return self.broker.env(user)

    def describe(self, victim: str) -> str:
        """What the machine held: database leader or sync standby, broker, active
        services."""
        assert self.db is not None and self.broker is not None
        held = []
        leader, sync = self.db.leader(), self.db.sync_standby()
        held += ["db leader"] if leader == victim else []
        held += ["db sync standby"] if sync == victim else []
        held += [self.broker.holds(victim)] if self.broker.holds(victim) else []
        pids = set(self.centre.machine(victim).pids())
        with psycopg.connect(self.db.url()) as conn:
            rows = conn.execute(  # the standbys' connections carry the same name
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING "
                "(pid) WHERE l.locktype = 'advisory' AND l.granted AND a.application_name "
                "LIKE 'lock %'").fetchall()
        for (name,) in rows:
            parts = str(name).split()
            if len(parts) >= 4 and parts[3].isdigit() and int(parts[3]) in pids:
                held.append(f"{parts[1].split('-')[0]} active")
        return ", ".join(held)

    def kill(self, victim: str) -> None:
        self.centre.machine(victim).kill()
        assert self.services is not None
        self.services.forget(victim)

    def revive(self, victim: str) -> None:
        assert self.db is not None and self.broker is not None and self.services is not None
        self.centre.machine(victim).revive()
        self.db.restart(victim)
        self.broker.restart(victim)
        self.services.start_on(victim)

    def close(self) -> None:
        try:
            if self.broker is not None:
                self.broker.close()
            if self.db is not None:
                self.db.close()
        finally:
            self.centre.close()


def enter(namespace_file: str) -> None:
    """Move this thread (and every thread and process it starts from now) into the network
    namespace of ``namespace_file``."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(namespace_file) as f:
        if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace_file} failed")


Phase = Callable[[Any, argparse.Namespace, Path, float], Coroutine[Any, Any, Any]]


def run_centre(args: argparse.Namespace, work: Path, run_phase: Phase) -> Any:
    work.mkdir(parents=True)
    home = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
    with open(home) as keep:  # this thread's own namespace, to come back to
        setup = CentreSetUp(work, args.broker, {
            "ttl_s": args.patroni_ttl, "loop_wait_s": args.patroni_loop_wait,
            "retry_timeout_s": args.patroni_retry_timeout})
        try:
            enter(f"/run/netns/{setup.field.namespace}")
            return asyncio.run(run_phase(setup, args, work, args.down_s))
        except BaseException:
            log.exception("the centre's phase failed")
            raise
        finally:
            enter(f"/proc/self/fd/{keep.fileno()}")  # before the field's processes go
            setup.close()
