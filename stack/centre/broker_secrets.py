"""What every node of the centre's broker cluster shares, made once and kept: the private CA
that signs each node's server certificate (for the node's address and name), the MQTT
identities of the sites the centre serves with their passwords (``stack.broker_config``:
``gateway.{site}.{gw}``, ``ingest.{site}``, ``rules.{site}``; one password file each, to
hand to that service as ``FACILITY_MQTT_PASSWORD_FILE``) and the Erlang cookie RabbitMQ's
nodes cluster with. All of it under ``<secrets file's folder>/broker/``, owner-only."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from facility.site import Site, load_site
from stack.broker_config import BrokerFiles, Identity, identities, write_broker_files
from stack.centre.description import CentreDescription
from stack.embedded.tls import Authority, issue, make_ca, read_pem, write_pem


@dataclass(frozen=True, slots=True)
class BrokerSecrets:
    folder: Path
    ca: Authority
    ca_file: Path
    files: BrokerFiles  # credentials/{user}.password
    identities: tuple[Identity, ...]
    cookie: str

    def password(self, user: str) -> str:
        return self.files.password_file(user).read_text().strip()

    def passwords(self) -> dict[str, str]:
        return {i.username: self.password(i.username) for i in self.identities}


def broker_sites(description: CentreDescription) -> list[Site]:
    """The sites whose identities log in (paths resolved by ``load_description``)."""
    assert description.broker is not None
    return [load_site(p) for p in description.broker.sites]


def ensure_broker_secrets(description: CentreDescription,
                          sites: list[Site] | None = None) -> BrokerSecrets:
    """The broker's CA, logins and cookie: read, or made the first time (a re-run keeps
    every password and the CA, so the nodes' certificates stay valid)."""
    folder = description.secrets.parent / "broker"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ca_file, ca_key = folder / "ca.crt", folder / "ca.key"
    if ca_file.exists() and ca_key.exists():
        ca = read_pem(ca_file, ca_key)
    else:
        ca = make_ca(f"{description.name} broker CA")
        write_pem(ca, ca_file, ca_key)
    sites = sites if sites is not None else broker_sites(description)
    files = write_broker_files(sites, folder / "auth")
    cookie_file = folder / "erlang.cookie"
    if not cookie_file.exists():
        _private(cookie_file, secrets.token_hex(20).upper())
    return BrokerSecrets(folder, ca, ca_file, files,
                         tuple(i for s in sites for i in identities(s)),
                         cookie_file.read_text().strip())


def node_certificate(secrets_: BrokerSecrets, description: CentreDescription, machine: str,
                     folder: Path) -> tuple[Path, Path]:
    """The machine's server certificate (its address and host name), written to
    ``folder`` as ``server.crt`` and ``server.key``."""
    auth = issue(secrets_.ca, f"{description.name} broker {machine}",
                 hosts=(description.address(machine), machine))
    paths = folder / "server.crt", folder / "server.key"
    write_pem(auth, *paths)
    return paths


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
