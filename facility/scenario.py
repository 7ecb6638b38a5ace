"""Scenario files: timed faults injected into simulated devices; no I/O but reading YAML.

    steps:
      - {at: 20s, device: a-elevator-2, fault: entrapment, duration: 10m}
      - {at: 40s, device: b-firepanel, fault: fire_alarm, zone: 3, duration: 2m}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from facility.config_errors import ConfigError, from_validation, read_yaml
from facility.site import Site

FaultName = Literal[
    "entrapment",
    "door_open_while_moving",
    "stopped_outside_door_zone",
    "controller_fault",
    "power_outage",
    "water_outage",
    "tank_level_low",
    "pump_fault",
    "low_pressure",
    "high_pressure",
    "vfd_fault",
    "fire_alarm",
    "fire_trouble",
    "fire_supervisory",
    "comms_loss",
]
FAULT_DEVICE_TYPES: dict[str, tuple[str, ...]] = {
    "entrapment": ("elevator",),
    "door_open_while_moving": ("elevator",),
    "stopped_outside_door_zone": ("elevator",),
    "controller_fault": ("elevator",),
    "power_outage": ("switchgear",),
    "water_outage": ("pump_set",),
    "tank_level_low": ("pump_set",),
    "pump_fault": ("pump_set",),
    "low_pressure": ("pump_set",),
    "high_pressure": ("pump_set",),
    "vfd_fault": ("pump_set",),
    "fire_alarm": ("fire_panel",),
    "fire_trouble": ("fire_panel",),
    "fire_supervisory": ("fire_panel",),
    "comms_loss": ("elevator", "pump_set", "switchgear", "fire_panel"),
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """'20s' -> 20.0, '10m' -> 600.0, 5 -> 5.0 (seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration like 20s, 10m, 1h")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


class FaultStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(alias="at", ge=0)
    device: str
    fault: FaultName
    duration_s: float | None = Field(default=None, alias="duration", gt=0)
    zone: int | None = Field(default=None, ge=1)

    @field_validator("at_s", "duration_s", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        return None if v is None else parse_duration(v)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    steps: tuple[FaultStep, ...] = ()


def load_scenario(path: Path | str, site: Site | None = None) -> Scenario:
    """Load a scenario; with a site, every step must name a device of the right type."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        scenario = Scenario.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise from_validation(path, exc) from exc
    if site is not None:
        problems = []
        for i, step in enumerate(scenario.steps):
            dev = site.devices.get(step.device)
            if dev is None:
                problems.append(f"steps[{i}].device: {step.device} is not a device of {site.id}")
            elif dev.type not in FAULT_DEVICE_TYPES[step.fault]:
                problems.append(f"steps[{i}].fault: {step.fault} does not apply to a {dev.type}")
        if problems:
            raise ConfigError(path, problems)
    return scenario
