"""One description of a monitoring centre (YAML): its machines and addresses, which engine
runs where, and the secrets file; validated at load (``extra="forbid"``, every machine named
by an engine must exist, addresses unique). Each engine's module (etcd.py, patroni.py,
haproxy.py, rabbitmq.py, nats.py) generates its files from this; ``facility centre-config``
writes them all. No I/O here except ``load_description`` and the secrets helpers.

    name: centre
    data_dir: /var/lib/facility-centre   # per machine: <data_dir>/<machine>/...
    secrets: secrets.yaml                # relative to this file; made by centre-config
    machines:
      - {name: m1, address: 10.215.1.11}
      - {name: m2, address: 10.215.1.12}
      - {name: m3, address: 10.215.1.13}
    database:
      machines: [m1, m2, m3]             # etcd member + Patroni + PostgreSQL on each
      haproxy: {machines: [m1, m2, m3], port: 5000}
    broker:
      engine: rabbitmq                   # or nats (measured too: docs/operations.md)
      machines: [m1, m2, m3]             # a node per machine, MQTT over TLS on mqtt_port
      mqtt_port: 8883
      sites: [sites/estate-north.yaml]   # whose gateway/ingest/rules logins to create
"""

from __future__ import annotations

import ipaddress
import secrets as random_secrets
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from facility.config_errors import load_model

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MachineSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    address: ipaddress.IPv4Address


class HaproxySpec(Strict):
    """HAProxy in front of the database: routes to the node whose Patroni answers 200 on
    GET /primary."""

    machines: list[str] = Field(min_length=1)
    port: int = Field(default=5000, ge=1, le=65535)
    check_interval_ms: int = Field(default=1000, ge=100)


class DatabaseSpec(Strict):
    """etcd (one member per machine) + Patroni-managed PostgreSQL (one node per machine)."""

    machines: list[str] = Field(min_length=3)
    port: int = Field(default=5432, ge=1, le=65535)
    rest_port: int = Field(default=8008, ge=1, le=65535)
    etcd_client_port: int = Field(default=2379, ge=1, le=65535)
    etcd_peer_port: int = Field(default=2380, ge=1, le=65535)
    database: str = Field(default="facility", pattern=r"^[a-z_][a-z0-9_]*$")
    user: str = Field(default="facility", pattern=r"^[a-z_][a-z0-9_]*$")
    # Patroni's DCS timings (loop_wait + 2 * retry_timeout <= ttl). A primary's machine lost
    # costs about ttl + 5 s: 15 s measured at 10/2/4, 20-25 s at 20/5/5 (bench/db_failover.py).
    # Patroni 3.0.2 (Debian 12) accepts ttl 10; later releases document a minimum of 20:
    # set 20/5/5 before upgrading Patroni.
    ttl_s: int = Field(default=10, ge=10)
    loop_wait_s: int = Field(default=2, ge=1)
    retry_timeout_s: int = Field(default=4, ge=3)
    synchronous_mode_strict: bool = False
    postgres_bin: Path = Path("/usr/lib/postgresql/15/bin")
    os_user: str = "postgres"
    haproxy: HaproxySpec | None = None

    @model_validator(mode="after")
    def _timings(self) -> DatabaseSpec:
        if self.loop_wait_s + 2 * self.retry_timeout_s > self.ttl_s:
            raise ValueError("loop_wait_s + 2 * retry_timeout_s must not exceed ttl_s "
                             "(Patroni would demote a healthy leader)")
        if len(self.machines) % 2 == 0:
            raise ValueError("an odd number of database machines (etcd needs a majority)")
        return self


class BrokerSpec(Strict):
    """The clustered MQTT broker (stack/centre/rabbitmq.py, nats.py): a node per machine,
    MQTT over TLS on ``mqtt_port`` (``tls: false`` for plain text, tests only), the logins
    and permissions of the ``sites`` (site files, relative to the centre file)."""

    engine: Literal["rabbitmq", "nats"] = "rabbitmq"
    machines: list[str] = Field(min_length=1)
    mqtt_port: int = Field(default=8883, ge=1, le=65535)
    tls: bool = True
    sites: list[Path] = Field(default_factory=list)
    cluster_port: int = Field(default=6222, ge=1, le=65535)  # NATS routes (RabbitMQ: 25672)


class ServicesSpec(Strict):
    """Where ingest, rules and the API run (two or more machines each)."""

    ingest: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    api: list[str] = Field(default_factory=list)
    api_port: int = Field(default=8000, ge=1, le=65535)


class CentreDescription(Strict):
    name: str = Field(default="centre", pattern=NAME_PATTERN)
    data_dir: Path = Path("/var/lib/facility-centre")
    secrets: Path = Path("secrets.yaml")
    machines: list[MachineSpec] = Field(min_length=1)
    database: DatabaseSpec | None = None
    broker: BrokerSpec | None = None
    services: ServicesSpec | None = None

    @field_validator("machines")
    @classmethod
    def _unique(cls, machines: list[MachineSpec]) -> list[MachineSpec]:
        for what, values in (("names", [m.name for m in machines]),
                             ("addresses", [str(m.address) for m in machines])):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"machine {what} must be unique: {', '.join(dupes)}")
        return machines

    @model_validator(mode="after")
    def _known_machines(self) -> CentreDescription:
        known = {m.name for m in self.machines}
        for where, names in self._placements():
            unknown = sorted(set(names) - known)
            if unknown:
                raise ValueError(f"{where} names unknown machines: {', '.join(unknown)}")
        return self

    def _placements(self) -> list[tuple[str, list[str]]]:
        out: list[tuple[str, list[str]]] = []
        if self.database is not None:
            out.append(("database.machines", self.database.machines))
            if self.database.haproxy is not None:
                out.append(("database.haproxy.machines", self.database.haproxy.machines))
        if self.broker is not None:
            out.append(("broker.machines", self.broker.machines))
        if self.services is not None:
            out += [(f"services.{k}", getattr(self.services, k))
                    for k in ("ingest", "rules", "api")]
        return out

    def machine(self, name: str) -> MachineSpec:
        for m in self.machines:
            if m.name == name:
                return m
        raise KeyError(name)

    def address(self, name: str) -> str:
        return str(self.machine(name).address)

    def machine_dir(self, name: str) -> Path:
        return self.data_dir / name


class DatabaseSecrets(Strict):
    superuser: str = Field(min_length=16)
    replication: str = Field(min_length=16)
    app: str = Field(min_length=16)


class CentreSecrets(Strict):
    database: DatabaseSecrets


def load_description(path: Path) -> CentreDescription:
    """Read and validate a centre file; a relative ``secrets`` is taken beside it."""
    description = load_model(path, CentreDescription)
    if not description.secrets.is_absolute():
        description = description.model_copy(
            update={"secrets": path.parent / description.secrets})
    if description.broker is not None:  # site files, like the secrets, beside this file
        description = description.model_copy(update={"broker": description.broker.model_copy(
            update={"sites": [path.parent / s for s in description.broker.sites]})})
    return description


def ensure_secrets(path: Path) -> CentreSecrets:
    """The centre's passwords: read from ``path``, or made (random) and written there
    (mode 0600) the first time, so that a re-run changes no one's password."""
    if path.exists():
        return load_model(path, CentreSecrets)
    made = CentreSecrets(database=DatabaseSecrets(
        superuser=random_secrets.token_urlsafe(24),
        replication=random_secrets.token_urlsafe(24),
        app=random_secrets.token_urlsafe(24)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(made.model_dump(mode="json"), sort_keys=False))
    return made


def describe(machines: list[tuple[str, str]], data_dir: Path, *, secrets: Path,
             database: DatabaseSpec | None = None, broker: BrokerSpec | None = None,
             services: ServicesSpec | None = None) -> CentreDescription:
    """A description built in code (tests, benchmarks) from (name, address) pairs."""
    return CentreDescription(
        data_dir=data_dir, secrets=secrets,
        machines=[MachineSpec(name=n, address=ipaddress.IPv4Address(a)) for n, a in machines],
        database=database, broker=broker, services=services)
