"""Scenario files, the simulators' input: timed device faults, timed protocol misbehaviour
and per-device misbehaviour for the whole run; no I/O but reading YAML.

    simulation:                       # for the whole run, per device
      a-pumps: {delay: 300ms}
      a-switchgear: {exceptions: [{table: input, address: 12, code: 2}], exception_rate: 0.05}
      b-firepanel: {segmentation: false, max_apdu: 128, read_property_multiple: false,
                    cov_refused: [zone_2_alarm],
                    points: {zone_4_trouble: {reliability: open-loop, out_of_service: true}}}
    steps:
      - {at: 20s, device: a-elevator-2, fault: entrapment, duration: 3m}
      - {at: 40s, device: b-firepanel, fault: fire_alarm, zone: 3, duration: 2m}
      - {at: 60s, device: a-pumps, fault: slow, delay: 2s, duration: 30s}
      - {at: 90s, device: a-switchgear, fault: modbus_busy, duration: 20s}
      - {at: 2m, device: b-firepanel, fault: point_fault, point: zone_1_alarm,
         reliability: shorted-loop, duration: 1m}
      - {at: 4m, device: b-firepanel, fault: out_of_service, point: zone_2_alarm, duration: 1m}

A step's `fault` is a device fault (`FAULT_DEVICE_TYPES`: played on the device's model, for
the device types listed) or a misbehaviour (simulators.misbehaviour.MISBEHAVIOURS: played on
the device's server; `point_fault` and `out_of_service` on one object of a BACnet device,
named by `point`). `load_scenario` is the one loader: `facility simulate` and `facility
demo` both refuse a bad file with the file and the path of the entry (ConfigError)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from facility.config_errors import ConfigError, load_model
from facility.durations import parse_duration
from facility.site import Device, Site
from simulators.misbehaviour import (
    BACNET_ONLY,
    MISBEHAVIOURS,
    MODBUS_ONLY,
    POINT_STEPS,
    Behaviour,
    PointStatus,
)

# Device fault -> the device types whose model plays it.
FAULT_DEVICE_TYPES: dict[str, tuple[str, ...]] = {
    "entrapment": ("elevator",),
    "door_open_while_moving": ("elevator",),
    "stopped_outside_door_zone": ("elevator",),
    "controller_fault": ("elevator",),
    "overtravel": ("elevator",),
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
    "water_leak": ("leak_detector",),
    "flooding": ("leak_detector",),
    "gas_leak": ("gas_detector",),
    "gas_outage": ("gas_detector",),
    "comms_loss": (
        "elevator", "pump_set", "switchgear", "fire_panel", "leak_detector", "gas_detector"
    ),
}
MODBUS_STEPS = ("drop_connections", "modbus_busy", "modbus_device_failure")
DEFAULT_SLOW_DELAY_S = 2.0


class ScenarioStep(BaseModel):
    """One timed fault or misbehaviour of one device, from `at_s` for `duration_s` (or on)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    at_s: float = Field(alias="at", ge=0)
    device: str
    fault: str
    duration_s: float | None = Field(default=None, alias="duration", gt=0)
    zone: int | None = Field(default=None, ge=1)
    delay_s: float | None = Field(default=None, alias="delay", gt=0, le=60)
    point: str | None = None
    reliability: str | None = None

    @field_validator("at_s", "duration_s", "delay_s", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        return None if v is None else parse_duration(v)

    @field_validator("fault")
    @classmethod
    def _known_fault(cls, v: str) -> str:
        if v not in FAULT_DEVICE_TYPES and v not in MISBEHAVIOURS:
            known = sorted([*FAULT_DEVICE_TYPES, *MISBEHAVIOURS])
            raise ValueError(f"unknown fault {v!r}; known: {', '.join(known)}")
        return v

    @model_validator(mode="after")
    def _options_fit_the_fault(self) -> ScenarioStep:
        if self.delay_s is not None and self.fault != "slow":
            raise ValueError("delay applies to the slow fault only")
        if (self.point is None) == (self.fault in POINT_STEPS):
            raise ValueError(f"point is required by {', '.join(POINT_STEPS)} and applies "
                             "to them only")
        if self.reliability is not None:
            if self.fault != "point_fault":
                raise ValueError("reliability applies to the point_fault fault only")
            PointStatus(reliability=self.reliability)  # a known reliability
        return self

    @property
    def slow_delay_s(self) -> float:
        return DEFAULT_SLOW_DELAY_S if self.delay_s is None else self.delay_s


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    steps: tuple[ScenarioStep, ...] = ()
    simulation: dict[str, Behaviour] = {}


def check_against_site(scenario: Scenario, site: Site) -> list[str]:
    """Problems of a scenario with this site: unknown devices, faults of the wrong type,
    Modbus misbehaviour on a BACnet device and the other way round."""
    problems: list[str] = []
    for i, step in enumerate(scenario.steps):
        dev = site.devices.get(step.device)
        if dev is None:
            problems.append(f"steps[{i}].device: {step.device} is not a device of {site.id}")
        elif step.fault in MODBUS_STEPS and dev.config.address.protocol == "bacnet":
            problems.append(f"steps[{i}].fault: {step.fault} applies to Modbus devices only")
        elif step.fault in POINT_STEPS and dev.config.address.protocol != "bacnet":
            problems.append(f"steps[{i}].fault: {step.fault} applies to BACnet devices only")
        elif step.point is not None and step.point not in _point_names(dev):
            problems.append(f"steps[{i}].point: {dev.id} has no point {step.point}")
        elif step.fault in FAULT_DEVICE_TYPES and dev.type not in FAULT_DEVICE_TYPES[step.fault]:
            problems.append(f"steps[{i}].fault: {step.fault} does not apply to a {dev.type}")
    for device_id, behaviour in scenario.simulation.items():
        dev = site.devices.get(device_id)
        if dev is None:
            problems.append(f"simulation.{device_id}: not a device of {site.id}")
            continue
        wrong = MODBUS_ONLY if dev.config.address.protocol == "bacnet" else BACNET_ONLY
        for name in sorted(behaviour.model_fields_set & set(wrong)):
            problems.append(
                f"simulation.{device_id}.{name}: does not apply to a "
                f"{dev.config.address.protocol} device"
            )
        for field, named in (("cov_refused", behaviour.cov_refused),
                             ("points", behaviour.points.keys())):
            for point in sorted(set(named) - _point_names(dev)):
                problems.append(f"simulation.{device_id}.{field}: {dev.id} has no point {point}")
    return problems


def _point_names(device: Device) -> set[str]:
    return {p.name for p in device.profile.points}


def load_scenario(path: Path | str, site: Site | None = None) -> Scenario:
    """Load a scenario file; with a site, check it against the site (ConfigError)."""
    path = Path(path)
    scenario = load_model(path, Scenario)
    if site is not None and (problems := check_against_site(scenario, site)):
        raise ConfigError(path, problems)
    return scenario
