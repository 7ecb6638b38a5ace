"""The broker's view of a site: one MQTT identity per service and per gateway, the ACL that
gives each only what it needs, and mosquitto's password file (``facility broker-config``).

Identities (user names cannot collide across sites: ids never contain a dot):

    gateway.{site}.{gateway}   writes facility/v1/{site}/{gateway}/# only (telemetry, births,
                               statuses, its will); reads nothing
    ingest.{site}              reads facility/v1/{site}/# (shared subscriptions included)
    rules.{site}               reads facility/v1/{site}/#, writes facility/v1/{site}/alarms

``write_broker_files`` keeps each identity's password in ``credentials/{user}.password``
(made once, random, readable by the owner only: hand each service its own file as
``FACILITY_MQTT_PASSWORD_FILE``), and writes ``passwd`` (mosquitto 2's PBKDF2-SHA512
format, ``$7$``) and ``acl`` from them, so that a re-run for a new gateway changes no one
else's password. Rendering is pure; only ``write_broker_files`` touches the disk."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facility import topics
from facility.site import Site

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default; the passwords are 192-bit random


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    role: str  # gateway | ingest | rules
    read: tuple[str, ...]
    write: tuple[str, ...]


def gateway_user(site_id: str, gateway_id: str) -> str:
    return f"gateway.{site_id}.{gateway_id}"


def ingest_user(site_id: str) -> str:
    return f"ingest.{site_id}"


def rules_user(site_id: str) -> str:
    return f"rules.{site_id}"


def identities(site: Site) -> list[Identity]:
    """Every identity of ``site`` with its topics."""
    everything = f"{topics.PREFIX}/{site.id}/#"
    out = [Identity(gateway_user(site.id, g.id), "gateway", (),
                    (f"{topics.PREFIX}/{site.id}/{g.id}/#",))
           for g in site.config.gateways]
    out.append(Identity(ingest_user(site.id), "ingest", (everything,), ()))
    out.append(Identity(rules_user(site.id), "rules", (everything,),
                        (topics.alarms(site.id),)))
    return out


def acl_text(all_identities: Sequence[Identity]) -> str:
    """mosquitto's acl_file: anything not granted is denied."""
    lines = ["# Written by `facility broker-config`; every user gets only what it needs.",
             "# A user not listed here (and an anonymous client) may do nothing.", ""]
    for ident in all_identities:
        lines.append(f"# {ident.role}")
        lines.append(f"user {ident.username}")
        lines += [f"topic read {t}" for t in ident.read]
        lines += [f"topic write {t}" for t in ident.write]
        lines.append("")
    return "\n".join(lines)


def password_hash(password: str, *, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """A mosquitto 2 password file hash: ``$7$iterations$salt$hash`` (PBKDF2-SHA512, salt
    and hash in base64), as ``mosquitto_passwd`` writes it."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def passwd_text(passwords: dict[str, str]) -> str:
    return "".join(f"{user}:{password_hash(pw)}\n" for user, pw in sorted(passwords.items()))


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    passwd: Path
    acl: Path
    credentials: Path  # directory of {user}.password files

    def password_file(self, username: str) -> Path:
        return self.credentials / f"{username}.password"


def write_broker_files(sites: Iterable[Site], out_dir: Path) -> BrokerFiles:
    """Write ``passwd``, ``acl`` and the per-identity password files for ``sites`` into
    ``out_dir``, keeping the passwords already there."""
    all_identities = [ident for site in sites for ident in identities(site)]
    names = [i.username for i in all_identities]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"the same site given twice? duplicate users {', '.join(duplicates)}")
    files = BrokerFiles(out_dir / "passwd", out_dir / "acl", out_dir / "credentials")
    files.credentials.mkdir(parents=True, exist_ok=True)
    os.chmod(files.credentials, 0o700)
    passwords = {ident.username: _password_of(files.password_file(ident.username))
                 for ident in all_identities}
    _write_private(files.passwd, passwd_text(passwords))
    _write_private(files.acl, acl_text(all_identities))
    return files


def _password_of(path: Path) -> str:
    if path.exists():
        existing = path.read_text().strip()
        if existing:
            return existing
    password = secrets.token_urlsafe(24)
    _write_private(path, password + "\n")
    return password


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, replacing the file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def mosquitto_snippet(files: BrokerFiles) -> str:
    """The lines of mosquitto.conf that use the files (the listener's TLS lines are the
    operator's: their own certificate)."""
    return "\n".join([
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {files.passwd.resolve()}",
        f"acl_file {files.acl.resolve()}",
        "",
    ])
