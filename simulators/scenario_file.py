"""The simulators' scenario file: facility's scenario format (timed faults) plus protocol
misbehaviour, as steps and as a per-device `simulation:` mapping; no I/O but reading YAML.

    simulation:                       # for the whole run, per device
      a-pumps: {delay: 300ms}
      a-switchgear: {exceptions: [{table: input, address: 12, code: 2}], exception_rate: 0.05}
      b-firepanel: {segmentation: false, max_apdu: 128, read_property_multiple: false}
    steps:
      - {at: 20s, device: a-elevator-2, fault: entrapment, duration: 3m}
      - {at: 60s, device: a-pumps, fault: slow, delay: 2s, duration: 30s}
      - {at: 90s, device: a-switchgear, fault: modbus_busy, duration: 20s}

Every file facility.scenario accepts is accepted here with the same meaning (`facility demo`
validates with that loader, so its scenario must keep to the device faults)."""

from __future__ import annotations

from pathlib import Path

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from facility.config_errors import ConfigError, from_validation, read_yaml
from facility.scenario import FAULT_DEVICE_TYPES, Scenario, parse_duration
from facility.site import Site
from simulators.misbehaviour import BACNET_ONLY, MISBEHAVIOURS, MODBUS_ONLY, Behaviour

DEFAULT_SLOW_DELAY_S = 2.0
MODBUS_STEPS = ("drop_connections", "modbus_busy", "modbus_device_failure")


class SimStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    at_s: float = Field(alias="at", ge=0)
    device: str
    fault: str
    duration_s: float | None = Field(default=None, alias="duration", gt=0)
    zone: int | None = Field(default=None, ge=1)
    delay_s: float | None = Field(default=None, alias="delay", gt=0, le=60)

    @field_validator("at_s", "duration_s", "delay_s", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _known_fault(self) -> SimStep:
        if self.fault not in FAULT_DEVICE_TYPES and self.fault not in MISBEHAVIOURS:
            known = sorted([*FAULT_DEVICE_TYPES, *MISBEHAVIOURS])
            raise ValueError(f"unknown fault {self.fault!r}; known: {', '.join(known)}")
        if self.delay_s is not None and self.fault != "slow":
            raise ValueError("delay applies to the slow fault only")
        return self

    @property
    def slow_delay_s(self) -> float:
        return DEFAULT_SLOW_DELAY_S if self.delay_s is None else self.delay_s


class SimScenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    steps: tuple[SimStep, ...] = ()
    simulation: dict[str, Behaviour] = {}

    @classmethod
    def from_scenario(cls, scenario: Scenario | SimScenario | None) -> SimScenario:
        if scenario is None:
            return cls()
        if isinstance(scenario, SimScenario):
            return scenario
        return cls.model_validate(scenario.model_dump(by_alias=True))


def check_against_site(scenario: SimScenario, site: Site) -> list[str]:
    """Problems of a scenario with this site: unknown devices, faults of the wrong type,
    Modbus misbehaviour on a BACnet device and the other way round."""
    problems: list[str] = []
    for i, step in enumerate(scenario.steps):
        dev = site.devices.get(step.device)
        if dev is None:
            problems.append(f"steps[{i}].device: {step.device} is not a device of {site.id}")
        elif step.fault in MODBUS_STEPS and dev.config.address.protocol != "modbus":
            problems.append(f"steps[{i}].fault: {step.fault} applies to Modbus devices only")
        elif step.fault in FAULT_DEVICE_TYPES and dev.type not in FAULT_DEVICE_TYPES[step.fault]:
            problems.append(f"steps[{i}].fault: {step.fault} does not apply to a {dev.type}")
    for device_id, behaviour in scenario.simulation.items():
        dev = site.devices.get(device_id)
        if dev is None:
            problems.append(f"simulation.{device_id}: not a device of {site.id}")
            continue
        wrong = BACNET_ONLY if dev.config.address.protocol == "modbus" else MODBUS_ONLY
        for name in sorted(behaviour.model_fields_set & set(wrong)):
            problems.append(
                f"simulation.{device_id}.{name}: does not apply to a "
                f"{dev.config.address.protocol} device"
            )
    return problems


def load_sim_scenario(path: Path | str, site: Site | None = None) -> SimScenario:
    """Load a scenario with misbehaviour; with a site, check it against the site."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        scenario = SimScenario.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise from_validation(path, exc) from exc
    if site is not None and (problems := check_against_site(scenario, site)):
        raise ConfigError(path, problems)
    return scenario
