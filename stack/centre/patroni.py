"""Patroni for the centre: one PostgreSQL node per database machine, managed by Patroni over
the centre's etcd, in synchronous mode. ``patroni_config`` renders one node's patroni.yml
from the centre description and its secrets; pure.

Choices (docs/operations.md, "High availability"):

- ``synchronous_mode: true`` with one synchronous standby: a COMMIT returns only once the
  WAL is flushed on the primary and on the synchronous standby, and Patroni promotes only
  that standby when the primary is lost, so an acknowledged commit survives the failover.
- ``synchronous_mode_strict: false`` (the description may turn it on): with three nodes and
  one lost there is still a standby to be synchronous, so strict mode adds nothing for the
  loss of one machine; it only matters once the primary is alone (two machines lost, or the
  one other standby still rebuilding), and then strict mode stops every write (ingest,
  alarms, work orders) until a standby is back, where non-strict mode keeps the centre
  writing on one copy. With etcd on the same three machines, losing two loses etcd's
  majority and Patroni demotes the primary anyway.
- ttl 10 s, loop_wait 2 s, retry_timeout 4 s (the description's defaults): a dead primary's
  leader key expires within 10 s of its last renewal (plus about 2 s when etcd's leader died
  with it: etcd extends leases on a leader change), the synchronous standby then asks the
  dead node's REST API (2 s timeout) and promotes: 11-15 s measured, against 20-25 s at
  Patroni's usual 20/5/5. Patroni 3.0.2 accepts ttl 10; later releases document 20 as the
  minimum (set 20/5/5 before upgrading Patroni). A leader that cannot reach etcd within
  retry_timeout (4 s) demotes itself: no spurious failover in the benchmark's runs here.
- ``maximum_lag_on_failover`` is not what protects commits here (synchronous mode is); kept
  at Patroni's default.
- Each node has its own unix socket directory (the default one would be shared by every
  namespace of a host) and listens on its machine's address only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stack.centre.description import CentreDescription, CentreSecrets
from stack.centre.etcd import database_spec

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"


def node_dir(description: CentreDescription, machine: str) -> Path:
    return description.machine_dir(machine) / "patroni"


def socket_dir(description: CentreDescription, machine: str) -> Path:
    return node_dir(description, machine) / "run"


def patroni_config(description: CentreDescription, secrets: CentreSecrets,
                   machine: str) -> dict[str, Any]:
    """Patroni's configuration for the node on ``machine``."""
    spec = database_spec(description)
    address = description.address(machine)
    base = node_dir(description, machine)
    return {
        "scope": f"facility-{description.name}",
        "namespace": "/facility/",
        "name": machine,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": f"{address}:{spec.rest_port}",
                    "connect_address": f"{address}:{spec.rest_port}"},
        "etcd3": {"hosts": [f"{description.address(m)}:{spec.etcd_client_port}"
                            for m in spec.machines]},
        "bootstrap": {
            "dcs": _dcs(description),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            "pg_hba": _pg_hba(description),  # the same as postgresql.pg_hba, which wins
        },
        "postgresql": {
            "listen": f"{address}:{spec.port}",
            "connect_address": f"{address}:{spec.port}",
            "data_dir": str(base / "data"),
            "bin_dir": str(spec.postgres_bin),
            "pgpass": str(base / "pgpass"),
            # a new replica's base backup starts at once (a spread checkpoint took 90 s)
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": secrets.database.superuser},
                "replication": {"username": REPLICATION_USER,
                                "password": secrets.database.replication},
                "rewind": {"username": SUPERUSER, "password": secrets.database.superuser},
            },
            "parameters": {"unix_socket_directories": str(socket_dir(description, machine))},
            "pg_hba": _pg_hba(description),
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                 "nosync": False},
    }


def _dcs(description: CentreDescription) -> dict[str, Any]:
    spec = database_spec(description)
    return {
        "ttl": spec.ttl_s,
        "loop_wait": spec.loop_wait_s,
        "retry_timeout": spec.retry_timeout_s,
        "synchronous_mode": True,
        "synchronous_mode_strict": spec.synchronous_mode_strict,
        "synchronous_node_count": 1,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                "max_wal_senders": 10, "max_replication_slots": 10,
                "max_connections": 200, "synchronous_commit": "on",
                # a client that vanished (its machine lost) frees its backend within seconds
                "tcp_keepalives_idle": 5, "tcp_keepalives_interval": 2,
                "tcp_keepalives_count": 3, "tcp_user_timeout": 5000,
                # a lost synchronous standby is dropped after 5 s (not 60), so Patroni names
                # the other one and commits go on (the walsender asks for a reply at 2.5 s)
                "wal_sender_timeout": "5s",
            },
        },
    }


def _pg_hba(description: CentreDescription) -> list[str]:
    """Passwords (SCRAM) from the centre's machines only; the unix socket for local admin."""
    subnets = sorted({f"{m.address}/32" for m in description.machines})
    lines = [f"local all {SUPERUSER} peer"]
    for cidr in subnets:
        lines.append(f"host replication {REPLICATION_USER} {cidr} scram-sha-256")
        lines.append(f"host all all {cidr} scram-sha-256")
    return lines


def patroni_argv(config_file: Path) -> list[str]:
    return ["patroni", str(config_file)]
