"""Device models: pure logic, no I/O, no clock. A model is advanced with `step(now)` (seconds
from any fixed origin, never decreasing), reports its values by profile point name with
`points()`, and takes faults with `set_fault(name, active, zone)`. A fault a model cannot
play raises UnsupportedFault; `build_model` picks the model for a device type."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol, TypeAlias

PointValue: TypeAlias = bool | int | float


class UnsupportedFault(NotImplementedError):
    """The model cannot simulate this fault (yet)."""

    def __init__(self, device_type: str, fault: str) -> None:
        super().__init__(f"a {device_type} simulator cannot play fault {fault}")
        self.device_type = device_type
        self.fault = fault


class DeviceModel(Protocol):
    device_type: str

    def step(self, now: float) -> None: ...

    def points(self) -> dict[str, PointValue]: ...

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None: ...


def seed_for(device_id: str) -> int:
    """A stable seed per device id, so every run of the demo behaves the same way."""
    return zlib.crc32(device_id.encode("utf-8"))


def build_model(device_type: str, *, seed: int = 0) -> DeviceModel:
    """The model for a site device type (facility.site.DeviceType)."""
    from simulators.models.elevator import ElevatorModel
    from simulators.models.fire_panel import FirePanelModel
    from simulators.models.gas_detector import GasDetectorModel
    from simulators.models.leak_detector import LeakDetectorModel
    from simulators.models.pump_set import PumpSetModel
    from simulators.models.switchgear import SwitchgearModel

    factories: dict[str, Callable[..., DeviceModel]] = {
        "elevator": ElevatorModel,
        "pump_set": PumpSetModel,
        "switchgear": SwitchgearModel,
        "fire_panel": FirePanelModel,
        "leak_detector": LeakDetectorModel,
        "gas_detector": GasDetectorModel,
    }
    try:
        factory = factories[device_type]
    except KeyError:
        raise ValueError(f"no simulator model for device type {device_type!r}") from None
    return factory(seed=seed)
