"""mosquitto as the demo and production run it, for the security tests: a TLS listener with
a certificate of a private CA, logins from the password file ``facility broker-config``
writes for a site, and its ACL. ``start_secure_broker`` starts one for a site (its own
process, its own port, stopped by pid) and hands out each identity's endpoint or service
environment; ``server_cert`` makes any other server certificate (expired, for another host)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from facility.mqtt_endpoint import MqttEndpoint, MqttUrl
from facility.ports import free_port
from facility.site import Site
from stack.broker_config import BrokerFiles, write_broker_files
from stack.embedded.broker import Broker, BrokerSecurity
from stack.embedded.tls import LOOPBACK_NAMES, Authority, issue, make_ca, write_pem


@dataclass
class SecureBroker:
    broker: Broker
    files: BrokerFiles
    ca_file: Path
    ca: Authority

    @property
    def url(self) -> str:
        return self.broker.url

    def password(self, user: str) -> str:
        return self.files.password_file(user).read_text().strip()

    def endpoint(self, user: str | None, *, password: str | None = None,
                 ca_file: Path | None = None, url: str | None = None,
                 cert: tuple[Path, Path] | None = None) -> MqttEndpoint:
        """``user``'s endpoint (its own password unless ``password`` is given)."""
        secret = password if password is not None else (self.password(user) if user else None)
        parsed = MqttUrl.parse(url or self.url)
        return MqttEndpoint(
            parsed, user, SecretStr(secret) if secret is not None else None,
            (ca_file or self.ca_file) if parsed.tls else None,
            cert[0] if cert else None, cert[1] if cert else None)

    def env(self, user: str) -> dict[str, str]:
        """A service's environment for ``user``: URL, user name, password file, CA."""
        return {"FACILITY_MQTT_URL": self.url, "FACILITY_MQTT_USERNAME": user,
                "FACILITY_MQTT_PASSWORD_FILE": str(self.files.password_file(user)),
                "FACILITY_MQTT_CA_FILE": str(self.ca_file)}

    def log(self) -> str:
        return self.broker.log_path.read_text(errors="replace")


def server_cert(ca: Authority, directory: Path, name: str, *,
                hosts: tuple[str, ...] = LOOPBACK_NAMES, expired: bool = False,
                client: bool = False) -> tuple[Path, Path]:
    """A certificate signed by ``ca`` written to ``directory`` (cert, key)."""
    now = dt.datetime.now(dt.UTC)
    window = ((now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired
              else (None, None))
    auth = issue(ca, name, hosts=hosts, client=client, not_before=window[0],
                 not_after=window[1])
    paths = directory / f"{name}.crt", directory / f"{name}.key"
    write_pem(auth, *paths)
    return paths


def new_ca(directory: Path, name: str = "ca") -> tuple[Authority, Path]:
    ca = make_ca(f"test {name}")
    write_pem(ca, directory / f"{name}.crt", directory / f"{name}.key")
    return ca, directory / f"{name}.crt"


@contextmanager
def start_secure_broker(site: Site, work: Path, *, expired: bool = False,
                        hosts: tuple[str, ...] = LOOPBACK_NAMES,
                        require_certificate: bool = False) -> Iterator[SecureBroker]:
    """mosquitto with TLS, the site's logins and ACL, until the block ends."""
    work.mkdir(parents=True, exist_ok=True)
    ca, ca_file = new_ca(work)
    cert, key = server_cert(ca, work, "server", hosts=hosts, expired=expired)
    files = write_broker_files([site], work / "auth")
    broker = Broker(work / "broker", free_port(), security=BrokerSecurity(
        ca_file, cert, key, files.passwd, files.acl, require_certificate=require_certificate))
    broker.start()
    try:
        yield SecureBroker(broker, files, ca_file, ca)
    finally:
        broker.stop()
