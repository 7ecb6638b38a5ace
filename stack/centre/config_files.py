"""``facility centre-config``: every engine's files of a centre, per machine, from its
description: ``<out>/<machine>/etcd.yml``, ``patroni.yml`` (mode 0600: it holds the
database passwords), ``haproxy.cfg``; the passwords themselves are made once in the
description's secrets file and kept on re-runs. Each engine module renders; this one writes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stack.centre.broker_files import write_broker_files
from stack.centre.broker_secrets import ensure_broker_secrets
from stack.centre.description import CentreDescription, CentreSecrets, ensure_secrets
from stack.centre.etcd import etcd_config
from stack.centre.haproxy import haproxy_config
from stack.centre.patroni import patroni_config


@dataclass
class MachineFiles:
    """The files written for one machine, by engine."""

    machine: str
    files: dict[str, Path] = field(default_factory=dict)


def write_centre_files(description: CentreDescription, out: Path,
                       secrets: CentreSecrets | None = None) -> dict[str, MachineFiles]:
    """Write every engine's files for every machine under ``out``; returns them by machine."""
    secrets = secrets or ensure_secrets(description.secrets)
    written = {m.name: MachineFiles(m.name) for m in description.machines}
    database = description.database
    if database is not None:
        for machine in database.machines:
            folder = out / machine
            written[machine].files["etcd"] = _write(
                folder / "etcd.yml", yaml.safe_dump(etcd_config(description, machine)))
            written[machine].files["patroni"] = _write(
                folder / "patroni.yml",
                yaml.safe_dump(patroni_config(description, secrets, machine), sort_keys=False),
                mode=0o600)
        if database.haproxy is not None:
            for machine in database.haproxy.machines:
                written[machine].files["haproxy"] = _write(
                    out / machine / "haproxy.cfg", haproxy_config(description, machine))
    if description.broker is not None:  # <out>/<machine>/<rabbitmq|nats>/...
        for machine, files in write_broker_files(
                description, ensure_broker_secrets(description), out).items():
            written[machine].files[description.broker.engine] = files["ca.crt"].parent
    return written


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path
