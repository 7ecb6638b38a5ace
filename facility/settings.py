"""Service settings from the environment (prefix FACILITY_) and command-line flags, validated
at start-up. Each service builds its settings object in main() and passes it down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facility.mqtt import MqttUrl


class CommonSettings(BaseSettings):
    """What every service needs: where the database and the broker are, and the site file."""

    model_config = SettingsConfigDict(env_prefix="FACILITY_", extra="ignore")

    database_url: str = Field(default="", description="postgresql://user@host:port/db")
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    site: Path = Path("sites/demo.yaml")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt(cls, v: str) -> str:
        MqttUrl.parse(v)
        return v

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
