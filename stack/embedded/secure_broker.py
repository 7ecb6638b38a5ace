"""mosquitto on loopback as production runs it, for the demo and the benchmarks: a TLS
listener with a certificate of the private CA in ``{state}/tls`` (made on first use), the
logins and ACL ``facility broker-config`` writes for the sites (``{state}/broker/auth``,
passwords kept across runs), and each identity's environment or endpoint for its clients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from facility.mqtt_endpoint import MqttEndpoint, MqttUrl
from facility.site import Site
from stack.broker_config import BrokerFiles, write_broker_files
from stack.embedded.broker import Broker, BrokerSecurity
from stack.embedded.tls import ensure_demo_pki


@dataclass(frozen=True, slots=True)
class SecureBroker:
    broker: Broker  # not started yet
    files: BrokerFiles
    ca_file: Path

    def env(self, user: str) -> dict[str, str]:
        """A child process's MQTT settings for ``user`` (the password stays in its file)."""
        return {"FACILITY_MQTT_URL": self.broker.url, "FACILITY_MQTT_USERNAME": user,
                "FACILITY_MQTT_PASSWORD_FILE": str(self.files.password_file(user)),
                "FACILITY_MQTT_CA_FILE": str(self.ca_file)}

    def endpoint(self, user: str) -> MqttEndpoint:
        """An in-process client's endpoint for ``user``."""
        password = self.files.password_file(user).read_text().strip()
        return MqttEndpoint(MqttUrl.parse(self.broker.url), user, SecretStr(password),
                            self.ca_file)


def secure_broker(state_dir: Path, sites: Sequence[Site], port: int) -> SecureBroker:
    """Prepare the CA, the server certificate, the logins and the ACL under ``state_dir``
    and a broker on 127.0.0.1:``port`` that uses them; start it with ``.broker.start()``."""
    tls = ensure_demo_pki(state_dir / "tls")
    files = write_broker_files(sites, state_dir / "broker" / "auth")
    broker = Broker(state_dir / "broker", port, security=BrokerSecurity(
        tls.ca_file, tls.cert_file, tls.key_file, files.passwd, files.acl))
    return SecureBroker(broker, files, tls.ca_file)
