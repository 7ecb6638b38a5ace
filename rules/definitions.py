"""Rules as data: the model of a rule, the built-in rule file (rules/builtin.yaml), a site's
overrides (``SiteConfig.rules``) and the checks against the site's profiles and the loaded
procedures. No I/O but reading the YAML; every mistake is a ConfigError with file and path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facility.config_errors import ConfigError, from_validation, read_yaml
from facility.procedures import Priority, Procedure
from facility.site import DeviceType, RuleOverride, Site
from rules.expression import Condition, ConditionError

RuleInput = Literal["telemetry", "device_status", "gateway_status"]
STATUS_NAMES = frozenset({"offline", "online"})


class RuleDef(BaseModel):
    """One rule: which devices, the condition, its delays, the alarm and the procedure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    alarm_type: str = Field(default="", pattern=r"^[a-z0-9_]*$", description="defaults to id")
    input: RuleInput = "telemetry"
    device_types: tuple[DeviceType, ...] = Field(default=(), description="empty: every type")
    condition: str
    on_delay_s: float = Field(default=0.0, ge=0)
    off_delay_s: float = Field(default=0.0, ge=0)
    priority: Priority
    procedure: str | None = None
    message: str = Field(min_length=1, description="Chinese alarm text")
    message_en: str = ""
    detail_tag: str | None = Field(default=None, description="name the true points of this tag")
    enabled: bool = True

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
        except ConditionError as exc:
            raise ValueError(exc.reason) from None
        if self.input != "telemetry":
            if cond.tags or not cond.names <= STATUS_NAMES:
                raise ValueError(f"a {self.input} rule may only use the names offline, online")
            if self.detail_tag:
                raise ValueError(f"a {self.input} rule has no points for detail_tag")
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
    raw = read_yaml(path)
    try:
        return RuleFile.model_validate(raw).rules
    except pydantic.ValidationError as exc:
        raise from_validation(path, exc) from exc


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
    rules: Iterable[RuleDef], site: Site, procedures: Mapping[str, Procedure], file: Path | str
) -> None:
    """Each telemetry rule's names and tags exist in the profile of every device it applies
    to, and each named procedure is loaded."""
    problems: list[str] = []
    for i, rule in enumerate(rules):
        where = f"rules[{i}] ({rule.id})"
        if rule.procedure is not None and rule.procedure not in procedures:
            problems.append(f"{where}.procedure: no procedure {rule.procedure} is loaded")
        if rule.input != "telemetry":
            continue
        cond = Condition.compile(rule.condition)
        tags = cond.tags | ({rule.detail_tag} if rule.detail_tag else set())
        for dev in site.devices.values():
            if rule.device_types and dev.type not in rule.device_types:
                continue
            points = {p.name for p in dev.profile.points}
            ptags = {t for p in dev.profile.points for t in p.tags}
            for name in sorted(cond.names - points):
                problems.append(f"{where}.condition: {name} is not a point of profile "
                                f"{dev.profile.profile} (device {dev.id})")
            for tag in sorted(tags - ptags):
                problems.append(f"{where}: no point of profile {dev.profile.profile} has tag "
                                f"{tag} (device {dev.id})")
    if problems:
        raise ConfigError(file, sorted(set(problems), key=problems.index))


def site_rules(
    site: Site, procedures: Mapping[str, Procedure], rules_file: Path | None = None
) -> tuple[RuleDef, ...]:
    """The rules in force at a site: the rule file with the site's overrides, checked."""
    rules = apply_overrides(load_rules(rules_file), site.config.rules, site.path)
    check_rules(rules, site, procedures, rules_file or builtin_path())
    return rules
