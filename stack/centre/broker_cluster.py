"""The centre's MQTT broker cluster started on the machines of a Centre (tests, benchmarks):
a RabbitMQ or a NATS node per broker machine, from the files ``facility centre-config``
writes, each run in the foreground by pid inside its machine.

    with Centre.create(3, work_dir) as centre:
        broker = start_broker(centre, work_dir / "broker", engine="rabbitmq", sites=[site])
        broker.url()                         # mqtts://10.215.y.11:8883,...12:8883,...13:8883
        broker.endpoint(ingest_user(site.id))  # the list, the login, the CA
        centre.machine("m1").kill(); ...; centre.machine("m1").revive(); broker.restart("m1")

``node_of`` maps a client's current URL back to its machine, so that a test kills the node
a client is on."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from facility.mqtt_endpoint import MqttEndpoint, MqttUrl
from facility.site import Site
from stack.centre.broker_files import write_broker_files
from stack.centre.broker_secrets import BrokerSecrets, ensure_broker_secrets
from stack.centre.description import BrokerSpec, CentreDescription, describe
from stack.centre.machines import Centre, Machine
from stack.centre.nats import NATS_READY_LINE, nats_argv
from stack.centre.rabbitmq import READY_LINE, rabbitmq_argv, rabbitmq_env, rabbitmqctl_argv

log = logging.getLogger(__name__)
Engine = Literal["rabbitmq", "nats"]


class BrokerClusterError(RuntimeError):
    pass


@dataclass
class BrokerCluster:
    centre: Centre
    description: CentreDescription
    secrets: BrokerSecrets
    work_dir: Path
    folders: dict[str, Path] = field(default_factory=dict)

    @property
    def spec(self) -> BrokerSpec:
        assert self.description.broker is not None
        return self.description.broker

    @property
    def engine(self) -> Engine:
        return self.spec.engine

    def node_url(self, machine: str) -> MqttUrl:
        return MqttUrl(self.description.address(machine), self.spec.mqtt_port, self.spec.tls)

    def url(self, machines: Sequence[str] | None = None) -> str:
        return ",".join(str(self.node_url(m)) for m in machines or self.spec.machines)

    def endpoint(self, user: str, *, machines: Sequence[str] | None = None,
                 keepalive_s: int = 3, connect_timeout_s: float = 2.0) -> MqttEndpoint:
        """``user``'s endpoint: every node (or ``machines``) in order, its password, the CA."""
        first, *others = [self.node_url(m) for m in machines or self.spec.machines]
        return replace(MqttEndpoint(
            first, user, SecretStr(self.secrets.password(user)),
            self.secrets.ca_file if self.spec.tls else None, others=tuple(others)),
            keepalive_s=keepalive_s, connect_timeout_s=connect_timeout_s)

    def env(self, user: str) -> dict[str, str]:
        """A service process's MQTT settings for ``user`` (the password stays in its file)."""
        env = {"FACILITY_MQTT_URL": self.url(), "FACILITY_MQTT_USERNAME": user,
               "FACILITY_MQTT_PASSWORD_FILE": str(self.secrets.files.password_file(user)),
               "FACILITY_MQTT_PROTOCOL": "3.1.1", "FACILITY_MQTT_KEEPALIVE_S": "3",
               "FACILITY_MQTT_CONNECT_TIMEOUT_S": "2"}
        if self.spec.tls:
            env["FACILITY_MQTT_CA_FILE"] = str(self.secrets.ca_file)
        return env

    def node_of(self, url: MqttUrl) -> str:
        for m in self.spec.machines:
            if self.node_url(m) == url:
                return m
        raise KeyError(str(url))

    def start_node(self, machine: str) -> None:
        m = self.centre.machine(machine)
        folder = self.folders[machine]
        if self.engine == "rabbitmq":
            m.start("rabbitmq", rabbitmq_argv(), env=rabbitmq_env(machine, folder), uts=True)
        else:
            m.start("nats", nats_argv(folder))

    def wait_ready(self, machine: str, timeout_s: float = 120.0, *, since: int = 0) -> None:
        m = self.centre.machine(machine)
        name = self.engine  # the node's process, and its log, are named after the engine
        line = READY_LINE if self.engine == "rabbitmq" else NATS_READY_LINE
        path = m.log_path(name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = path.read_bytes()[since:].decode(errors="replace") if path.exists() else ""
            if line in text:
                return
            if _exited(m, name):
                break
            time.sleep(0.2)
        tail = path.read_text(errors="replace")[-3000:] if path.exists() else ""
        raise BrokerClusterError(f"{self.engine} on {machine} not ready in {timeout_s:.0f} s:"
                                 f"\n{tail}")

    def restart(self, machine: str, timeout_s: float = 120.0) -> None:
        """Start the node of a revived machine again and wait until it serves and the cluster
        is whole again (``wait_whole``)."""
        path = self.centre.machine(machine).log_path(self.engine)
        since = path.stat().st_size if path.exists() else 0
        self.start_node(machine)
        self.wait_ready(machine, timeout_s, since=since)
        self.wait_whole(timeout_s)

    def wait_whole(self, timeout_s: float = 120.0) -> None:
        """RabbitMQ: every node online and none quorum-critical (every quorum queue, so
        every MQTT session, has its members on the other nodes online): losing any one node
        now keeps every session's majority. What the rolling upgrade waits for before the
        next node (docs/operations.md); a node just back serves MQTT before its queue
        members have rejoined, and losing another node then would stall those sessions."""
        if self.engine != "rabbitmq":
            return
        machines = list(self.spec.machines)
        deadline = time.monotonic() + timeout_s
        self.rabbitmqctl(machines[0], "await_online_nodes", str(len(machines)),
                         timeout_s=timeout_s)
        pending = machines
        while True:
            said = {m: self._rabbit(m, "rabbitmq-queues", "check_if_node_is_quorum_critical",
                                    timeout_s=30) for m in pending}
            pending = [m for m, r in said.items() if r.returncode != 0]
            if not pending:
                return
            if time.monotonic() > deadline:
                why = "; ".join(f"{m}: {(said[m].stdout + said[m].stderr).strip()[-300:]}"
                                for m in pending)
                raise BrokerClusterError(f"quorum-critical after {timeout_s:.0f} s: {why}")
            time.sleep(1.0)

    def diagnosis(self, lines: int = 15) -> str:
        """The last ``lines`` lines of every node's log: what a start that timed out says."""
        out = []
        for m in self.spec.machines:
            path = self.centre.machine(m).log_path(self.engine)
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {self.engine} on {m}:\n" + "\n".join(text))
        return "\n".join(out)

    def rabbitmqctl(self, machine: str, *args: str, timeout_s: float = 60) -> str:
        """Run ``rabbitmqctl -n rabbit@<machine> ...`` inside the machine (RabbitMQ only)."""
        r = self._rabbit(machine, "rabbitmqctl", *args, timeout_s=timeout_s)
        if r.returncode != 0:
            raise BrokerClusterError(f"rabbitmqctl {' '.join(args)} on {machine}: "
                                     f"{r.stderr.strip() or r.stdout.strip()}")
        return r.stdout


    def _rabbit(self, machine: str, tool: str, *args: str,
                timeout_s: float) -> subprocess.CompletedProcess[str]:
        """One of RabbitMQ's command-line tools against the machine's node, run inside it."""
        m = self.centre.machine(machine)
        argv = rabbitmqctl_argv(machine, *args, tool=tool)
        return subprocess.run(m.argv(argv, uts=True),
                              env=rabbitmq_env(machine, self.folders[machine]),
                              capture_output=True, text=True, timeout=timeout_s, check=False)


def _exited(m: Machine, name: str) -> bool:
    procs = [p for n, p in m.processes if n == name]
    return bool(procs) and procs[-1].poll() is not None


def broker_description(centre: Centre, data_dir: Path, *, engine: Engine,
                       sites: Sequence[Path], machines: Sequence[str] | None = None,
                       tls: bool = True, port: int = 8883) -> CentreDescription:
    names = list(machines or [m.name for m in centre.machines])
    return describe([(m.name, m.address) for m in centre.machines], data_dir,
                    secrets=data_dir / "secrets.yaml",
                    broker=BrokerSpec(engine=engine, machines=names, mqtt_port=port, tls=tls,
                                      sites=list(sites)))


def start_broker(centre: Centre, work_dir: Path, *, engine: Engine, sites: Sequence[Site],
                 machines: Sequence[str] | None = None, tls: bool = True,
                 timeout_s: float = 180.0) -> BrokerCluster:
    """A node on every machine of ``centre`` (or ``machines``), clustered, serving MQTT."""
    description = broker_description(centre, work_dir, engine=engine, machines=machines,
                                     sites=[s.path for s in sites], tls=tls)
    secrets_ = ensure_broker_secrets(description, list(sites))
    write_broker_files(description, secrets_, work_dir)  # work_dir is the data_dir
    cluster = BrokerCluster(centre, description, secrets_, work_dir, {
        m: description.machine_dir(m) / engine for m in cluster_machines(description)})
    machines = cluster_machines(description)
    try:
        if engine == "rabbitmq":
            # the first node forms the cluster, the others join it one at a time: two
            # blank nodes joining at once can wait on each other's Mnesia tables (10 x 30 s)
            for m in machines:
                cluster.start_node(m)
                cluster.wait_ready(m, timeout_s)
            cluster.rabbitmqctl(machines[0], "await_online_nodes", str(len(machines)))
        else:
            for m in machines:
                cluster.start_node(m)
            for m in machines:
                cluster.wait_ready(m, timeout_s)
    except BrokerClusterError as e:
        raise BrokerClusterError(f"{e}\n{cluster.diagnosis()}") from None
    log.info("%s cluster serving MQTT on %s", engine, cluster.url())
    return cluster


def cluster_machines(description: CentreDescription) -> list[str]:
    assert description.broker is not None
    return list(description.broker.machines)
