"""The rule engine: a pure function of (state, input, now) -> (new state, actions); no I/O and
no clock reads.

For each (source, rule) the state holds the last known condition, since when it has held,
whether the alarm is raised (latched), and the detail captured when the condition became
true. A condition true for ``on_delay_s`` raises once (``RaiseAlarm``); false for
``off_delay_s`` clears once (``ClearAlarm``); unknown (a missing or bad point) changes nothing.
``tick`` fires the delays that expire without a new message. Every change of a rule's state
comes with a ``SaveRuleState`` action, so running timers survive a restart. Historical
(replayed) telemetry is evaluated but changes no state and raises nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeAlias

from facility.messages import Value
from facility.site import Site
from rules.definitions import RuleDef
from rules.expression import Condition, ConditionError, Context

RuleKey: TypeAlias = tuple[str, str]  # (source, rule_id); source is a device or gateway id


@dataclass(frozen=True, slots=True)
class RuleState:
    condition: bool | None = None
    since: datetime | None = None
    active: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "since": self.since.isoformat() if self.since else None,
            "active": self.active,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RuleState:
        since = raw.get("since")
        return cls(
            condition=raw.get("condition"),
            since=datetime.fromisoformat(since) if since else None,
            active=bool(raw.get("active", False)),
            detail=dict(raw.get("detail") or {}),
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


@dataclass(frozen=True, slots=True)
class TelemetryInput:
    device: str
    values: Mapping[str, Value]  # the device's current good values; absent = unknown
    historical: bool = False


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


Action: TypeAlias = RaiseAlarm | ClearAlarm | SaveRuleState


@dataclass(frozen=True, slots=True)
class _Rule:
    defn: RuleDef
    condition: Condition

    def applies_to(self, device_type: str) -> bool:
        return not self.defn.device_types or device_type in self.defn.device_types


class Engine:
    """Compiled rules and the site's devices; ``evaluate`` and ``tick`` are pure."""

    def __init__(self, rules: Iterable[RuleDef], devices: Mapping[str, DeviceInfo]) -> None:
        self._rules = {r.id: _Rule(r, Condition.compile(r.condition)) for r in rules}
        self._devices = dict(devices)

    @classmethod
    def for_site(cls, rules: Iterable[RuleDef], site: Site) -> Engine:
        devices = {
            d.id: DeviceInfo(d.id, d.type, d.gateway, {p.name: p.tags for p in d.profile.points})
            for d in site.devices.values()
        }
        return cls(rules, devices)

    @property
    def rules(self) -> tuple[RuleDef, ...]:
        return tuple(r.defn for r in self._rules.values())

    def evaluate(
        self, state: EngineState, inp: Input, now: datetime
    ) -> tuple[EngineState, list[Action]]:
        """Evaluate every rule the input concerns."""
        if isinstance(inp, GatewayStatusInput):
            ctx = Context({"offline": not inp.online, "online": inp.online}, {})
            return self._apply(state, inp.gateway, "gateway_status", None, ctx, now)
        dev = self._devices.get(inp.device)
        if dev is None:
            return state, []
        if isinstance(inp, DeviceStatusInput):
            ctx = Context({"offline": not inp.online, "online": inp.online}, {})
            return self._apply(state, dev.id, "device_status", dev.type, ctx, now)
        if inp.historical:
            return state, []  # replayed values: stored by ingest, never re-fire alarms
        return self._apply(state, dev.id, "telemetry", dev.type, Context(inp.values, dev.tags),
                           now)

    def tick(self, state: EngineState, now: datetime) -> tuple[EngineState, list[Action]]:
        """Fire the on- and off-delays that have run out since the last message."""
        updates: dict[RuleKey, RuleState] = {}
        actions: list[Action] = []
        for key, st in state.rules.items():
            rule = self._rules.get(key[1])
            if rule is None or st.condition is None or st.condition == st.active:
                continue
            new, acts = self._fire(key, rule, st, now)
            if acts:
                updates[key] = new
                actions += acts
        return _merged(state, updates), actions

    def _apply(
        self, state: EngineState, source: str, kind: str, device_type: str | None,
        ctx: Context, now: datetime,
    ) -> tuple[EngineState, list[Action]]:
        updates: dict[RuleKey, RuleState] = {}
        actions: list[Action] = []
        for rule in self._rules.values():
            if rule.defn.input != kind or (device_type and not rule.applies_to(device_type)):
                continue
            try:
                cond = rule.condition.evaluate(ctx)
            except ConditionError:
                cond = None  # a value of the wrong type: as good as unknown
            if cond is None:
                continue
            key = (source, rule.defn.id)
            st = state.get(key)
            changed = cond != st.condition
            if changed:
                detail = _detail(rule, ctx) if cond else st.detail
                st = replace(st, condition=cond, since=now, detail=detail)
            st, acts = self._fire(key, rule, st, now)
            if changed and not acts:
                acts = [SaveRuleState(source, rule.defn.id, st, now)]
            if acts:
                updates[key] = st
                actions += acts
        return _merged(state, updates), actions

    def _fire(
        self, key: RuleKey, rule: _Rule, st: RuleState, now: datetime
    ) -> tuple[RuleState, list[Action]]:
        """Raise or clear when the condition has held for its delay; else nothing."""
        if st.condition is None or st.since is None or st.condition == st.active:
            return st, []
        source, d = key[0], rule.defn
        held_s = (now - st.since).total_seconds()
        device = None if d.input == "gateway_status" else source
        if st.condition and held_s >= d.on_delay_s:
            st = replace(st, active=True)
            gateway = source if device is None else self._devices[source].gateway
            points = st.detail.get("points", [])
            message = d.message + (f" ({', '.join(points)})" if points else "")
            return st, [
                RaiseAlarm(source, device, gateway, d.id, d.alarm_type, d.priority, d.procedure,
                           message, {**st.detail, "message_en": d.message_en}, now),
                SaveRuleState(source, d.id, st, now),
            ]
        if not st.condition and held_s >= d.off_delay_s:
            st = replace(st, active=False)
            return st, [ClearAlarm(source, device, d.id, d.alarm_type, now),
                        SaveRuleState(source, d.id, st, now)]
        return st, []


def _detail(rule: _Rule, ctx: Context) -> dict[str, Any]:
    """What the alarm says about the values that made the condition true."""
    detail: dict[str, Any] = {
        "values": {n: ctx.values[n] for n in sorted(rule.condition.names) if n in ctx.values}
    }
    tag = rule.defn.detail_tag
    if tag:
        detail["points"] = [p for p, tags in ctx.tags.items()
                            if tag in tags and _is_true(ctx.values.get(p))]
    return detail


def _is_true(v: Value | None) -> bool:
    return isinstance(v, bool | int | float) and bool(v)


def _merged(state: EngineState, updates: Mapping[RuleKey, RuleState]) -> EngineState:
    if not updates:
        return state
    return EngineState({**state.rules, **updates})
