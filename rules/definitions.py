"""Rules as data: the model of a rule, the built-in rule file (rules/builtin.yaml), a site's
overrides (``SiteConfig.rules``) and the checks against the site's profiles and the loaded
procedures. No I/O but reading the YAML; every mistake is a ConfigError with file and path."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from facility.config_errors import ConfigError, load_model
from facility.procedures import Priority, Procedure
from facility.site import DeviceType, RuleOverride, Site
from rules.expression import Condition, ConditionError

log = logging.getLogger(__name__)
RuleInput = Literal["telemetry", "device_status", "gateway_status"]
Scope = Literal["device", "building", "gateway"]
STATUS_NAMES = frozenset({"offline", "online"})


class Suppression(BaseModel):
    """Suppressed by design: while the ``rule``'s alarm is active on the device itself, on a
    device of the same building, or on the device's gateway (``scope``), this rule's alarms
    (of the listed device types; empty: all) are grouped under it: recorded, not annunciated,
    no work order of their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(pattern=r"^[a-z0-9_]+$")
    scope: Scope
    device_types: tuple[DeviceType, ...] = ()


class Chatter(BaseModel):
    """Intermittent signals (ISA-18.2 chattering): a condition that becomes true ``count``
    times within ``window_s`` raises one alarm flagged chattering, whatever its on-delay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=3, ge=2)
    window_s: float = Field(default=60.0, gt=0)


class RuleDef(BaseModel):
    """One rule: which devices, the condition, its delays, the alarm and the procedure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    alarm_type: str = Field(default="", pattern=r"^[a-z0-9_]*$", description="defaults to id")
    input: RuleInput = "telemetry"
    device_types: tuple[DeviceType, ...] = Field(default=(), description="empty: every type")
    condition: str
    clear_condition: str | None = Field(
        default=None, description="hysteresis: once true, the condition holds until this is true")
    on_delay_s: float = Field(default=0.0, ge=0)
    off_delay_s: float = Field(default=0.0, ge=0)
    priority: Priority
    procedure: str | None = None
    message: str = Field(min_length=1, description="Chinese alarm text")
    message_en: str = ""
    detail_tag: str | None = Field(default=None, description="name the true points of this tag")
    detail_bad_tag: str | None = Field(
        default=None,
        description="name the bad points of this tag, with what their device said (flags)")
    suppressed_by: tuple[Suppression, ...] = ()
    immediate_condition: str | None = Field(
        default=None,
        description="while the condition holds, this raises at once, without the on-delay")
    chatter: Chatter | None = None
    follow_up: bool | None = Field(
        default=None,
        description="a fault that began and ended while its gateway was cut off opens a "
                    "follow-up work order (default: the critical rules)")
    release_s: float = Field(
        default=30.0, ge=0,
        description="a parent: how long after its clear the alarms grouped under it that are "
                    "still active are released (annunciated, given work orders)")
    enabled: bool = True

    @property
    def wants_follow_up(self) -> bool:
        """Whether a fault found after the fact opens a work order."""
        wanted = self.priority == "critical" if self.follow_up is None else self.follow_up
        return wanted and self.procedure is not None

    @model_validator(mode="before")
    @classmethod
    def _default_alarm_type(cls, raw: object) -> object:
        if isinstance(raw, dict) and not raw.get("alarm_type") and "id" in raw:
            return {**raw, "alarm_type": raw["id"]}
        return raw

    @model_validator(mode="after")
    def _check(self) -> RuleDef:
        try:
            cond = Condition.compile(self.condition)
            for extra in (self.clear_condition, self.immediate_condition):
                if extra is not None:
                    more = Condition.compile(extra)
                    cond = Condition(cond.text, cond.tree, cond.names | more.names,
                                     cond.tags | more.tags)
        except ConditionError as exc:
            raise ValueError(exc.reason) from None
        if self.input != "telemetry":
            if cond.tags or not cond.names <= STATUS_NAMES:
                raise ValueError(f"a {self.input} rule may only use the names offline, online")
            if self.detail_tag or self.detail_bad_tag:
                raise ValueError(f"a {self.input} rule has no points for detail_tag")
        if self.detail_tag and self.detail_bad_tag:
            raise ValueError("a rule names its points by detail_tag or detail_bad_tag, "
                             "not both")
        if self.input == "gateway_status" and self.device_types:
            raise ValueError("a gateway_status rule applies to gateways, not device types")
        return self


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[RuleDef, ...]

    @model_validator(mode="after")
    def _unique(self) -> RuleFile:
        ids = [r.id for r in self.rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"rule ids appear twice: {', '.join(sorted(dup))}")
        return self


def builtin_path() -> Path:
    """rules/builtin.yaml, package data next to this module."""
    return Path(__file__).with_name("builtin.yaml")


def load_rules(path: Path | None = None) -> tuple[RuleDef, ...]:
    """The rules of a rule file (the built-in one by default)."""
    path = path or builtin_path()
    return load_model(path, RuleFile).rules


def apply_overrides(
    rules: Iterable[RuleDef], overrides: Mapping[str, RuleOverride], file: Path | str
) -> tuple[RuleDef, ...]:
    """Apply a site's tuning; a disabled rule is dropped, an unknown rule id refused."""
    by_id = {r.id: r for r in rules}
    unknown = sorted(set(overrides) - set(by_id))
    if unknown:
        raise ConfigError(file, [f"rules.{u}: no rule {u} (known: {', '.join(sorted(by_id))})"
                                 for u in unknown])
    out = []
    for rule in by_id.values():
        o = overrides.get(rule.id)
        if o is not None:
            update = {k: v for k, v in (("on_delay_s", o.on_delay_s),
                                        ("off_delay_s", o.off_delay_s)) if v is not None}
            rule = rule.model_copy(update={**update, "enabled": o.enabled and rule.enabled})
        if rule.enabled:
            out.append(rule)
    return tuple(out)


def check_rules(
    rules: Iterable[RuleDef], site: Site, procedures: Mapping[str, Procedure], file: Path | str,
    *, strict: bool = True,
) -> list[str]:
    """Each named procedure is loaded, and each telemetry rule's names and tags exist in the
    profile of every device it applies to. With ``strict`` (a rule file of one's own) a
    missing point is an error; otherwise (the built-in rules, written for the standard
    profiles) the rule just does not apply to that device: returns those notes."""
    problems: list[str] = []
    skipped: list[str] = []
    for i, rule in enumerate(rules):
        where = f"rules[{i}] ({rule.id})"
        if rule.procedure is not None and rule.procedure not in procedures:
            problems.append(f"{where}.procedure: no procedure {rule.procedure} is loaded")
        if rule.input != "telemetry":
            continue
        cond = Condition.compile(rule.condition)
        for extra in (rule.clear_condition, rule.immediate_condition):
            if extra is not None:
                more = Condition.compile(extra)
                cond = Condition(cond.text, cond.tree, cond.names | more.names,
                                 cond.tags | more.tags)
        tags = cond.tags | {t for t in (rule.detail_tag, rule.detail_bad_tag) if t}
        for dev in site.devices.values():
            if rule.device_types and dev.type not in rule.device_types:
                continue
            points = {p.name for p in dev.profile.points}
            ptags = {t for p in dev.profile.points for t in p.tags}
            missing = [f"{where}.condition: {name} is not a point of profile "
                       f"{dev.profile.profile} (device {dev.id})"
                       for name in sorted(cond.names - points)]
            missing += [f"{where}: no point of profile {dev.profile.profile} has tag "
                        f"{tag} (device {dev.id})" for tag in sorted(tags - ptags)]
            (problems if strict else skipped).extend(missing)
    if problems:
        raise ConfigError(file, sorted(set(problems), key=problems.index))
    return skipped


def site_rules(
    site: Site, procedures: Mapping[str, Procedure], rules_file: Path | None = None
) -> tuple[RuleDef, ...]:
    """The rules in force at a site: the rule file with the site's overrides, checked (the
    built-in rules skip, with a log line, the devices whose profile lacks their points)."""
    rules = apply_overrides(load_rules(rules_file), site.config.rules, site.path)
    skipped = check_rules(rules, site, procedures, rules_file or builtin_path(),
                          strict=rules_file is not None)
    for note in skipped:
        log.info("rule not applied: %s", note)
    return rules
