"""The parts of the dispatch file that make people wake up, as validated models (no I/O but
reading the environment for keys at load): SMS and voice-call channels (Alibaba Cloud SMS,
Alibaba Cloud voice notification, Tencent Cloud SMS), the loud ladder per priority (SMS at
once, a voice call if nobody acknowledged or accepted in N minutes) and the acknowledgement
SLA of alarms with its two escalation policies (alarms with a work order and alarms without
one: device or gateway offline, a fire panel's communication loss).

Keys never sit in the file: each provider channel names the environment variables that hold
them (``FACILITY_ALIYUN_ACCESS_KEY_ID`` / ``..._SECRET``, ``FACILITY_TENCENT_SECRET_ID`` /
``..._KEY`` by default); ``resolve_keys`` reads them at load into ``SecretStr`` (never logged)
and names every missing one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from facility.durations import parse_duration

Seconds = Annotated[float, BeforeValidator(parse_duration)]
PriorityName = Literal["critical", "high", "medium", "low"]
ENV = r"^[A-Z_][A-Z0-9_]*$"
ROSTER = r"^[a-z0-9][a-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Phone(_Strict):
    enabled: bool = True
    params: tuple[str, ...] = Field(
        default=("headline", "source", "title"),
        description="template variables, in order, from the notice: headline, source, title,"
                    " priority, state, detail, work_order, alarm")
    param_max_chars: int = Field(default=35, ge=1, le=500)


class AliyunSmsChannel(_Phone):
    """Alibaba Cloud SMS (dysmsapi, SendSms, RPC request signed with HMAC-SHA1)."""

    type: Literal["aliyun_sms"]
    endpoint: pydantic.AnyHttpUrl = pydantic.AnyHttpUrl("https://dysmsapi.aliyuncs.com/")
    region: str = "cn-hangzhou"
    sign_name: str = Field(min_length=1)
    template_code: str = Field(min_length=1)
    key_id_env: str = Field(default="FACILITY_ALIYUN_ACCESS_KEY_ID", pattern=ENV)
    key_secret_env: str = Field(default="FACILITY_ALIYUN_ACCESS_KEY_SECRET", pattern=ENV)


class AliyunVoiceChannel(_Phone):
    """Alibaba Cloud voice notification (dyvmsapi, SingleCallByTts)."""

    type: Literal["aliyun_voice"]
    endpoint: pydantic.AnyHttpUrl = pydantic.AnyHttpUrl("https://dyvmsapi.aliyuncs.com/")
    region: str = "cn-hangzhou"
    tts_code: str = Field(min_length=1)
    called_show_number: str = Field(default="", pattern=r"^[0-9]*$")
    play_times: int = Field(default=3, ge=1, le=3)
    key_id_env: str = Field(default="FACILITY_ALIYUN_ACCESS_KEY_ID", pattern=ENV)
    key_secret_env: str = Field(default="FACILITY_ALIYUN_ACCESS_KEY_SECRET", pattern=ENV)


class TencentSmsChannel(_Phone):
    """Tencent Cloud SMS (SendSms 2021-01-11, TC3-HMAC-SHA256)."""

    type: Literal["tencent_sms"]
    endpoint: pydantic.AnyHttpUrl = pydantic.AnyHttpUrl("https://sms.tencentcloudapi.com/")
    region: str = "ap-guangzhou"
    sdk_app_id: str = Field(pattern=r"^[0-9]+$")
    sign_name: str = Field(min_length=1)
    template_id: str = Field(pattern=r"^[0-9]+$")
    key_id_env: str = Field(default="FACILITY_TENCENT_SECRET_ID", pattern=ENV)
    key_secret_env: str = Field(default="FACILITY_TENCENT_SECRET_KEY", pattern=ENV)


PhoneChannel = AliyunSmsChannel | AliyunVoiceChannel | TencentSmsChannel
SMS_TYPES = ("aliyun_sms", "tencent_sms")
VOICE_TYPES = ("aliyun_voice",)


class Rung(_Strict):
    """How loud one priority gets: SMS after ``sms_after`` and a voice call after
    ``voice_after`` (from the notice), each unless acknowledged / accepted by then; None:
    never."""

    sms_after_s: Seconds | None = Field(default=None, alias="sms_after", ge=0)
    voice_after_s: Seconds | None = Field(default=None, alias="voice_after", ge=0)


def _default_ladder() -> dict[PriorityName, Rung]:
    return {"critical": Rung(sms_after=0.0, voice_after=300.0),
            "high": Rung(sms_after=600.0), "medium": Rung(), "low": Rung()}


class Loud(_Strict):
    sms: tuple[str, ...] = Field(default=(), description="SMS channels (aliyun_sms, tencent_sms)")
    voice: tuple[str, ...] = Field(default=(), description="voice channels (aliyun_voice)")
    by_priority: dict[PriorityName, Rung] = Field(default_factory=_default_ladder)

    def rung(self, priority: str) -> Rung:
        """The priority's rung; a priority the file leaves out keeps its default."""
        for source in (self.by_priority, _default_ladder()):
            for name, rung in source.items():
                if name == priority:
                    return rung
        return Rung()


class Target(_Strict):
    """One escalation level of an unacknowledged alarm: ``after`` the acknowledge time ran
    out, tell ``notify``: ``next`` (the roster's next person on call), ``supervisor`` (the
    escalation's supervisor role) or the on-call person of a named roster."""

    after_s: Seconds = Field(default=0.0, alias="after", ge=0)
    notify: str = Field(pattern=ROSTER)


def _default_levels() -> tuple[Target, ...]:
    return (Target(after=0.0, notify="next"), Target(after=300.0, notify="supervisor"))


class AckPolicy(_Strict):
    levels: tuple[Target, ...] = Field(default_factory=_default_levels, min_length=1)
    renotify_every_s: Seconds = Field(default=600.0, alias="renotify_every", gt=0)

    @pydantic.field_validator("levels")
    @classmethod
    def _in_order(cls, v: tuple[Target, ...]) -> tuple[Target, ...]:
        if [t.after_s for t in v] != sorted(t.after_s for t in v):
            raise ValueError("levels must be in order of 'after'")
        return v


def _default_acknowledge() -> dict[PriorityName, float]:
    return {"critical": 60.0, "high": 300.0, "medium": 900.0, "low": 3600.0}


class Acknowledgement(_Strict):
    """The acknowledgement SLA of alarms. An alarm with a work order uses its procedure's
    ``sla.acknowledge``; any other (and an order without a procedure) the time of its
    priority here."""

    enabled: bool = True
    roster: str = Field(default="duty_room", pattern=ROSTER,
                        description="who acknowledges alarms; its next person is told first")
    acknowledge_s: dict[PriorityName,
                        Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]] = Field(
        default_factory=_default_acknowledge, alias="acknowledge")
    with_order: AckPolicy = Field(default_factory=AckPolicy)
    without_order: AckPolicy = Field(default_factory=lambda: AckPolicy(
        levels=(Target(after=0.0, notify="next"), Target(after=900.0, notify="supervisor")),
        renotify_every=1800.0))

    def for_priority(self, priority: str) -> float:
        """The acknowledge time of a priority; one the file leaves out keeps its default."""
        for source in (self.acknowledge_s, _default_acknowledge()):
            for name, seconds in source.items():
                if name == priority:
                    return seconds
        return 900.0


@dataclass(frozen=True, slots=True)
class Keys:
    key_id: SecretStr
    secret: SecretStr


def resolve_keys(channels: Mapping[str, object], environ: Mapping[str, str]
                 ) -> tuple[dict[str, Keys], list[str]]:
    """The keys of every enabled provider channel from the environment, and the problems
    (``channels.NAME: environment variable X is not set``)."""
    keys: dict[str, Keys] = {}
    problems: list[str] = []
    for name, channel in channels.items():
        if not isinstance(channel, AliyunSmsChannel | AliyunVoiceChannel | TencentSmsChannel):
            continue
        if not channel.enabled:
            continue
        missing = [v for v in (channel.key_id_env, channel.key_secret_env) if not environ.get(v)]
        problems += [f"channels.{name}: environment variable {v} is not set" for v in missing]
        if not missing:
            keys[name] = Keys(SecretStr(environ[channel.key_id_env]),
                              SecretStr(environ[channel.key_secret_env]))
    return keys, problems
