"""The one module that builds and parses MQTT topic strings of contract v1; no I/O.

    facility/v1/{site}/{gateway}/status                 gateway birth and death (retained)
    facility/v1/{site}/{gateway}/{device}/birth         device metadata (retained)
    facility/v1/{site}/{gateway}/{device}/telemetry     values
    facility/v1/{site}/{gateway}/{device}/status        device online/offline (retained)
    facility/v1/{site}/alarms                           alarm and work-order events
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "facility/v1"
_ID = re.compile(r"^[a-z0-9_-]+$")


class TopicKind(StrEnum):
    GATEWAY_STATUS = "gateway_status"
    BIRTH = "birth"
    TELEMETRY = "telemetry"
    DEVICE_STATUS = "status"
    ALARMS = "alarms"


class TopicError(ValueError):
    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"topic {topic!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Topic:
    kind: TopicKind
    site: str
    gateway: str | None = None
    device: str | None = None

    def __str__(self) -> str:
        if self.kind is TopicKind.ALARMS:
            return f"{PREFIX}/{self.site}/alarms"
        if self.kind is TopicKind.GATEWAY_STATUS:
            return f"{PREFIX}/{self.site}/{self.gateway}/status"
        return f"{PREFIX}/{self.site}/{self.gateway}/{self.device}/{self.kind.value}"


def _check(*ids: str) -> None:
    for i in ids:
        if not _ID.match(i):
            raise TopicError(i, "ids are [a-z0-9_-]+")


def gateway_status(site: str, gateway: str) -> str:
    _check(site, gateway)
    return str(Topic(TopicKind.GATEWAY_STATUS, site, gateway))


def device_topic(kind: TopicKind, site: str, gateway: str, device: str) -> str:
    if kind not in (TopicKind.BIRTH, TopicKind.TELEMETRY, TopicKind.DEVICE_STATUS):
        raise ValueError(f"{kind} is not a device topic")
    _check(site, gateway, device)
    return str(Topic(kind, site, gateway, device))


def alarms(site: str) -> str:
    _check(site)
    return str(Topic(TopicKind.ALARMS, site))


def subscription(kind: TopicKind, site: str = "+", share_group: str | None = None,
                 gateway: str = "+") -> str:
    """A topic filter for one kind of message (of every gateway, or of one), optionally as
    an MQTT 5 shared subscription."""
    filters = {
        TopicKind.GATEWAY_STATUS: f"{PREFIX}/{site}/{gateway}/status",
        TopicKind.ALARMS: f"{PREFIX}/{site}/alarms",
    }
    f = filters.get(kind, f"{PREFIX}/{site}/{gateway}/+/{kind.value}")
    return f"$share/{share_group}/{f}" if share_group else f


def parse(topic: str) -> Topic:
    """Parse a contract topic; TopicError says what is wrong with anything else."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX:
        raise TopicError(topic, f"not under {PREFIX}/")
    rest = parts[2:]
    if len(rest) == 2 and rest[1] == "alarms":
        _check_parsed(topic, rest[:1])
        return Topic(TopicKind.ALARMS, rest[0])
    if len(rest) == 3 and rest[2] == "status":
        _check_parsed(topic, rest[:2])
        return Topic(TopicKind.GATEWAY_STATUS, rest[0], rest[1])
    if len(rest) == 4:
        _check_parsed(topic, rest[:3])
        try:
            kind = TopicKind(rest[3])
        except ValueError:
            raise TopicError(topic, f"unknown message kind {rest[3]!r}") from None
        if kind in (TopicKind.BIRTH, TopicKind.TELEMETRY, TopicKind.DEVICE_STATUS):
            return Topic(kind, rest[0], rest[1], rest[2])
    raise TopicError(topic, "does not match any v1 topic")


def _check_parsed(topic: str, ids: list[str]) -> None:
    for i in ids:
        if not _ID.match(i):
            raise TopicError(topic, f"id {i!r} is not [a-z0-9_-]+")
