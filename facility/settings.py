"""Service settings from the environment (prefix FACILITY_) and command-line flags, validated
at start-up. Each service builds its settings object in main() and passes it down.

The MQTT login and TLS files come from the environment only (never a flag, so that a
password never shows in a process list): ``FACILITY_MQTT_USERNAME`` with
``FACILITY_MQTT_PASSWORD`` or ``FACILITY_MQTT_PASSWORD_FILE``; for ``mqtts://``
``FACILITY_MQTT_CA_FILE`` and optionally ``FACILITY_MQTT_CERT_FILE`` /
``FACILITY_MQTT_KEY_FILE``. ``FACILITY_MQTT_URL`` may list a clustered broker's nodes,
comma-separated and all of one scheme; ``FACILITY_MQTT_KEEPALIVE_S`` and
``FACILITY_MQTT_CONNECT_TIMEOUT_S`` say how soon a dead node is given up for the next."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facility.mqtt_endpoint import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_KEEPALIVE_S,
    MqttEndpoint,
    MqttUrl,
)

log = logging.getLogger(__name__)


class CommonSettings(BaseSettings):
    """What every service needs: where the database and the broker are, and the site file."""

    model_config = SettingsConfigDict(env_prefix="FACILITY_", extra="ignore")

    database_url: str = Field(default="", description="postgresql://user@host:port/db")
    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883",
                          description="one broker URL or a cluster's, comma-separated")
    mqtt_keepalive_s: int = Field(default=DEFAULT_KEEPALIVE_S, ge=1, le=3600)
    mqtt_connect_timeout_s: float = Field(default=DEFAULT_CONNECT_TIMEOUT_S, gt=0, le=120)
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_username: str = ""
    mqtt_password: SecretStr | None = None
    mqtt_password_file: Path | None = None
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    site: Path = Path("sites/demo.yaml")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt(cls, v: str) -> str:
        MqttUrl.parse_list(v)
        return v

    @field_validator("mqtt_password_file", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a readable file")
        return v

    @model_validator(mode="after")
    def _mqtt_login(self) -> CommonSettings:
        if self.mqtt_password is not None and self.mqtt_password_file is not None:
            raise ValueError("set FACILITY_MQTT_PASSWORD or FACILITY_MQTT_PASSWORD_FILE, "
                             "not both")
        has_password = self.mqtt_password is not None or self.mqtt_password_file is not None
        if has_password and not self.mqtt_username:
            raise ValueError("an MQTT password needs FACILITY_MQTT_USERNAME")
        self.mqtt_endpoint()  # TLS files with a plain URL, a key without its certificate
        return self

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if v and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return v

    def require_database(self) -> str:
        if not self.database_url:
            raise ValueError("FACILITY_DATABASE_URL (or --database-url) is required")
        return self.database_url

    def mqtt_endpoint(self) -> MqttEndpoint:
        """The broker and this service's login; reads the password file."""
        password = self.mqtt_password
        if self.mqtt_password_file is not None:
            text = self.mqtt_password_file.read_text().strip()
            if not text:
                raise ValueError(f"{self.mqtt_password_file} is empty")
            password = SecretStr(text)
        first, *others = MqttUrl.parse_list(self.mqtt_url)
        return MqttEndpoint(
            first, self.mqtt_username or None, password, self.mqtt_ca_file,
            self.mqtt_cert_file, self.mqtt_key_file, tuple(others), self.mqtt_keepalive_s,
            self.mqtt_connect_timeout_s)


def check_mqtt_endpoint(endpoint: MqttEndpoint) -> None:
    """Start-up checks of a service's broker settings: the TLS files load (OSError or
    ssl.SSLError otherwise); a plain connection off loopback is worth one warning."""
    endpoint.ssl_context()
    if not endpoint.url.tls and not all(u.is_loopback for u in endpoint.urls):
        log.warning("MQTT %s is plain text over the network: logins and alarms can be read "
                    "and forged on the way; use mqtts:// with FACILITY_MQTT_CA_FILE",
                    endpoint)
    if endpoint.username is None:
        log.info("MQTT %s: no login (FACILITY_MQTT_USERNAME unset)", endpoint)
