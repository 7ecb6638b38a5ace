"""The rule engine's vocabulary: the state it keeps per (source, rule), the inputs it reads
and the actions it returns. Frozen value objects, no I/O; the only logic is a rule state's
round trip through JSON (it is saved with every change, so running timers survive a restart)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from facility.messages import Value

RuleKey: TypeAlias = tuple[str, str]  # (source, rule_id); source is a device or gateway id


@dataclass(frozen=True, slots=True)
class RuleState:
    condition: bool | None = None
    since: datetime | None = None
    active: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)
    grouped: bool = False  # a parent whose children are grouped under it, not yet released
    rises: tuple[datetime, ...] = ()  # when the condition became true, within the chatter window
    chattering: bool = False  # the alarm was raised (or is held) as chattering
    occurrences: int = 0  # times the condition became true since the chattering alarm rose

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "condition": self.condition,
            "since": self.since.isoformat() if self.since else None,
            "active": self.active,
            "detail": dict(self.detail),
            "grouped": self.grouped,
        }
        if self.rises or self.chattering:
            out.update(rises=[t.isoformat() for t in self.rises], chattering=self.chattering,
                       occurrences=self.occurrences)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RuleState:
        since = raw.get("since")
        return cls(
            condition=raw.get("condition"),
            since=datetime.fromisoformat(since) if since else None,
            active=bool(raw.get("active", False)),
            detail=dict(raw.get("detail") or {}),
            grouped=bool(raw.get("grouped", False)),
            rises=tuple(datetime.fromisoformat(t) for t in raw.get("rises") or ()),
            chattering=bool(raw.get("chattering", False)),
            occurrences=int(raw.get("occurrences", 0)),
        )


@dataclass(frozen=True, slots=True)
class EngineState:
    rules: Mapping[RuleKey, RuleState] = field(default_factory=dict)

    def get(self, key: RuleKey) -> RuleState:
        return self.rules.get(key, RuleState())


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    type: str
    gateway: str
    tags: Mapping[str, tuple[str, ...]]  # point -> tags
    building: str = ""


@dataclass(frozen=True, slots=True)
class TelemetryInput:
    device: str
    values: Mapping[str, Value]  # the device's current good values; absent = unknown
    historical: bool = False
    changed: frozenset[str] | None = None  # the points that changed; None: all
    bad: Mapping[str, str] = field(default_factory=dict)  # points reported bad -> flags


@dataclass(frozen=True, slots=True)
class DeviceStatusInput:
    device: str
    online: bool


@dataclass(frozen=True, slots=True)
class GatewayStatusInput:
    gateway: str
    online: bool


Input: TypeAlias = TelemetryInput | DeviceStatusInput | GatewayStatusInput


@dataclass(frozen=True, slots=True)
class RaiseAlarm:
    source: str
    device: str | None
    gateway: str | None
    rule_id: str
    alarm_type: str
    priority: str
    procedure: str | None
    message: str
    detail: Mapping[str, Any]
    at: datetime
    suppressed_by: tuple[str, str] | None = None  # the parent alarm's (source, alarm_type)


@dataclass(frozen=True, slots=True)
class UpdateAlarm:
    """The points named by an active alarm's ``detail_tag`` changed while its condition held
    (a second fire zone in alarm, the first one back to normal): new message and detail."""

    source: str
    device: str | None
    rule_id: str
    alarm_type: str
    message: str
    detail: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class ClearAlarm:
    source: str
    device: str | None
    rule_id: str
    alarm_type: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SaveRuleState:
    source: str
    rule_id: str
    state: RuleState
    at: datetime


@dataclass(frozen=True, slots=True)
class GroupAlarms:
    """A parent alarm was raised: group its children's open, active alarms under it (those
    raised since ``since`` less a grace period; the service applies it)."""

    parent: tuple[str, str]  # (source, alarm_type)
    children: tuple[tuple[str, str], ...]
    since: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class UngroupAlarms:
    """A parent alarm cleared: its children still active annunciate on their own again."""

    parent: tuple[str, str]
    at: datetime


Action: TypeAlias = (RaiseAlarm | UpdateAlarm | ClearAlarm | SaveRuleState | GroupAlarms
                     | UngroupAlarms)
