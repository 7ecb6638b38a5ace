"""etcd for the centre: one member per database machine, the store Patroni keeps its leader
key in. ``etcd_config`` renders one member's configuration file (etcd 3.4 ``--config-file``
YAML) from the centre description; pure. A majority (2 of 3) must be up for Patroni to
hold or take the leader key: etcd itself fails over in about a second (election timeout
1000 ms, heartbeat 100 ms)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stack.centre.description import CentreDescription, DatabaseSpec


def database_spec(description: CentreDescription) -> DatabaseSpec:
    if description.database is None:
        raise ValueError("the centre description has no database section")
    return description.database


def client_urls(description: CentreDescription) -> list[str]:
    spec = database_spec(description)
    return [f"http://{description.address(m)}:{spec.etcd_client_port}" for m in spec.machines]


def etcd_config(description: CentreDescription, machine: str) -> dict[str, Any]:
    """etcd's configuration for the member on ``machine``."""
    spec = database_spec(description)
    address = description.address(machine)
    cluster = ",".join(f"{m}=http://{description.address(m)}:{spec.etcd_peer_port}"
                       for m in spec.machines)
    return {
        "name": machine,
        "data-dir": str(etcd_data_dir(description, machine)),
        "listen-peer-urls": f"http://{address}:{spec.etcd_peer_port}",
        "initial-advertise-peer-urls": f"http://{address}:{spec.etcd_peer_port}",
        "listen-client-urls": f"http://{address}:{spec.etcd_client_port},"
                              f"http://127.0.0.1:{spec.etcd_client_port}",
        "advertise-client-urls": f"http://{address}:{spec.etcd_client_port}",
        "initial-cluster": cluster,
        "initial-cluster-state": "new",
        "initial-cluster-token": f"facility-{description.name}",
        "heartbeat-interval": 100,
        "election-timeout": 1000,
        "enable-v2": False,
        # Patroni speaks etcd's v3 API over HTTP: the gateway is off by default in a file
        "enable-grpc-gateway": True,
        "logger": "zap",
        "log-level": "warn",
    }


def etcd_data_dir(description: CentreDescription, machine: str) -> Path:
    return description.machine_dir(machine) / "etcd"


def etcd_argv(config_file: Path) -> list[str]:
    return ["etcd", "--config-file", str(config_file)]
