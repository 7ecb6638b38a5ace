"""Ingest, rules and the API on the machines of a centre (``stack.centre.machines``), where
the description's ``services`` section places them, each given the cluster's database
target and its list of broker endpoints.

Every ingest and rules process runs with ``--standby``: the instances of one service share
one persistent MQTT session, and one at a time is active for it (``facility.db.active_lock``:
a PostgreSQL advisory lock on a connection of its own); the others stand by and take over
within seconds of its loss. The API is stateless: every instance serves, on its machine's
address. A machine that is killed loses its processes with it; after ``revive`` the caller
starts its engines again, then ``start_on(machine)`` its services (they stand by if another
instance is active meanwhile). No I/O but the processes started."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stack.centre.description import ServicesSpec
from stack.centre.machines import Centre, Machine

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "rules", "api")


@dataclass(frozen=True, slots=True)
class ServiceTargets:
    """What every service process is given: the site, the database target (a libpq
    multi-host URL with ``target_session_attrs=read-write``, or HAProxy's address) and the
    broker endpoints (comma-separated URLs of one scheme)."""

    site_file: Path
    database_url: str
    mqtt_url: str
    mqtt_protocol: str = "3.1.1"  # RabbitMQ's and NATS's MQTT listeners speak 3.1.1 only
    procedures_dir: Path = ROOT / "procedures"
    lock_poll_s: float = 0.5
    ingest_args: tuple[str, ...] = ()
    rules_args: tuple[str, ...] = ()
    # per service: its MQTT login (user name, password file, CA), e.g. BrokerCluster.env(user)
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def environment(self, service: str, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, "FACILITY_MQTT_URL": self.mqtt_url,
                "FACILITY_MQTT_PROTOCOL": self.mqtt_protocol,
                **self.service_env.get(service, {}),
                "FACILITY_DATABASE_URL": self.database_url,
                "FACILITY_SITE": str(self.site_file), "PYTHONPATH": str(ROOT)}


def service_argv(service: str, address: str, targets: ServiceTargets,
                 api_port: int) -> list[str]:
    """The command line of ``service`` on the machine at ``address``."""
    cli = [sys.executable, "-m", "stack.cli", service]
    standby = ["--standby", "--lock-poll-s", f"{targets.lock_poll_s:g}"]
    if service == "ingest":
        return [*cli, *standby, *targets.ingest_args]
    if service == "rules":
        return [*cli, "--procedures", str(targets.procedures_dir), *standby,
                *targets.rules_args]
    if service == "api":
        return [*cli, "--host", address, "--port", str(api_port)]
    raise ValueError(f"no service {service!r} (one of {', '.join(SERVICES)})")


@dataclass(frozen=True, slots=True)
class Running:
    service: str
    machine: str
    proc: subprocess.Popen[bytes]


class CentreServices:
    """The service processes of a centre, started and restarted per machine."""

    def __init__(self, centre: Centre, placement: ServicesSpec, targets: ServiceTargets,
                 *, base_env: Mapping[str, str] | None = None) -> None:
        for service in SERVICES:
            if len(getattr(placement, service)) == 1:
                log.warning("%s on fewer than two machines: the centre does not survive "
                            "the loss of its machine", service)
        self.centre = centre
        self.placement = placement
        self.targets = targets
        self._base_env = dict(base_env) if base_env is not None else {}
        self.running: list[Running] = []

    def machines_of(self, service: str) -> list[Machine]:
        return [self.centre.machine(name) for name in getattr(self.placement, service)]

    def start(self) -> None:
        """Every service on every machine the placement names."""
        for machine in self.centre.machines:
            self.start_on(machine.name)

    def start_on(self, machine_name: str) -> list[Running]:
        """The services placed on one machine (after ``revive``, for instance)."""
        machine = self.centre.machine(machine_name)
        self.running = [r for r in self.running if r.machine != machine_name
                        or r.proc.poll() is None]
        started = []
        for service in SERVICES:
            if machine_name not in getattr(self.placement, service):
                continue
            argv = service_argv(service, machine.address, self.targets,
                                self.placement.api_port)
            env = self.targets.environment(service, self._base_env)
            proc = machine.start(service, argv, env=env, cwd=ROOT)
            started.append(Running(service, machine_name, proc))
            log.info("%s: %s started (pid %d)", machine_name, service, proc.pid)
        self.running += started
        return started

    def wait_subscribed(self, timeout_s: float = 180.0) -> None:
        """Until an instance of ingest and of rules (those placed anywhere) has subscribed,
        as their logs say: before it, the broker keeps nothing for their sessions."""
        deadline = time.monotonic() + timeout_s
        for service in ("ingest", "rules"):
            logs = [self.log_path(service, m) for m in getattr(self.placement, service)]
            while logs and not any(
                    p.exists() and f"{service} subscribed" in p.read_text(errors="replace")
                    for p in logs):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {service} instance subscribed within "
                                       f"{timeout_s:.0f} s; see {logs[0].parent}")
                time.sleep(0.2)

    def forget(self, machine_name: str) -> None:
        """The machine was killed: its processes are gone with it."""
        self.running = [r for r in self.running if r.machine != machine_name]

    def api_urls(self) -> list[str]:
        return [f"http://{m.address}:{self.placement.api_port}"
                for m in self.machines_of("api")]

    def log_path(self, service: str, machine_name: str) -> Path:
        return self.centre.machine(machine_name).log_path(service)
