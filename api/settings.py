"""The API's own settings, from the environment (prefix ``FACILITY_API_``), validated when the
app is built: the bearer tokens' lifetime, the sign-in throttling (api.sign_in_throttle) and
the live stream's heartbeat and bounds (api.event_hub).
``create_app`` reads them when it is not handed a settings object (``facility api``); tests
pass their own."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.event_hub import HubLimits
from api.sign_in_throttle import ThrottlePolicy


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACILITY_API_", extra="ignore")

    token_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 86400,
                             description="lifetime of a bearer token")
    sign_in_free_failures_user: int = Field(
        default=3, ge=1, le=100, description="failures of a user name before delays start")
    sign_in_free_failures_address: int = Field(
        default=10, ge=1, le=1000, description="failures from an address before delays start")
    sign_in_first_delay_s: float = Field(
        default=1.0, gt=0, le=3600, description="the delay once the free failures are spent;"
        " doubled at each further failure, up to the cap")
    sign_in_max_delay_s: float = Field(default=60.0, ge=1, le=3600,
                                       description="cap of the exponential delay")
    sign_in_lock_after_user: int = Field(default=10, ge=2, le=1000,
                                         description="failures that lock a user name")
    sign_in_lock_after_address: int = Field(default=50, ge=2, le=10000,
                                            description="failures that lock a client address")
    sign_in_lock_s: float = Field(default=900.0, ge=10, le=86400,
                                  description="how long a lock lasts; counts are forgotten"
                                  " this long after the last failure")

    chromium: str = Field(default="chromium", max_length=500,
                          description="Chromium command or path that prints the monthly"
                          " report as PDF; empty: no PDF (503)")

    stream_heartbeat_s: float = Field(
        default=15.0, ge=0.05, le=300, description="live stream: heartbeat comment and token"
        " check period")
    stream_backlog: int = Field(
        default=1000, ge=1, le=100_000, description="live stream: events waiting to be sent to"
        " one client before it counts as fallen behind and resumes from its last id")
    stream_replay: int = Field(
        default=5000, ge=1, le=1_000_000, description="live stream: newest events kept in"
        " memory, so that a resuming client is served without a query")

    @model_validator(mode="after")
    def _order(self) -> ApiSettings:
        if (self.sign_in_lock_after_user <= self.sign_in_free_failures_user
                or self.sign_in_lock_after_address <= self.sign_in_free_failures_address):
            raise ValueError("a lock must come after the free failures")
        return self

    @property
    def token_ttl(self) -> timedelta:
        return timedelta(seconds=self.token_ttl_s)

    def hub_limits(self) -> HubLimits:
        return HubLimits(heartbeat_s=self.stream_heartbeat_s, backlog=self.stream_backlog,
                         replay=self.stream_replay)

    def throttle(self) -> ThrottlePolicy:
        return ThrottlePolicy(
            free_failures_user=self.sign_in_free_failures_user,
            free_failures_address=self.sign_in_free_failures_address,
            first_delay_s=self.sign_in_first_delay_s, max_delay_s=self.sign_in_max_delay_s,
            lock_after_user=self.sign_in_lock_after_user,
            lock_after_address=self.sign_in_lock_after_address, lock_s=self.sign_in_lock_s)
