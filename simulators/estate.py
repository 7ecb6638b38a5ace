"""Links the models of one building so that faults have physical consequences across
devices; pure logic, no I/O and no clock.

`Estate.step(now)` first carries each building's shared conditions to its models, then
steps every model:
- power: a building is powered unless one of its switchgear models has lost its incoming
  supply (`power_outage`); its elevators stop where they are (a car between floors with
  passengers is an entrapment) and its pump sets stop (the outlet pressure falls);
- fire: while one of its fire panels is in alarm its elevators are on fire service (recalled
  to the main floor, doors open).
A building without switchgear is always powered; one without a fire panel never recalls."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from simulators.models import DeviceModel
from simulators.models.elevator import ElevatorModel
from simulators.models.fire_panel import PANEL_ALARM, FirePanelModel
from simulators.models.pump_set import PumpSetModel
from simulators.models.switchgear import SwitchgearModel


@dataclass(frozen=True, slots=True)
class BuildingState:
    powered: bool
    fire_alarm: bool


class Estate:
    def __init__(self, models: Mapping[str, DeviceModel], building_of: Mapping[str, str]) -> None:
        self.models = dict(models)
        self._buildings: dict[str, list[DeviceModel]] = {}
        for device_id, model in self.models.items():
            self._buildings.setdefault(building_of[device_id], []).append(model)

    def __iter__(self) -> Iterator[tuple[str, DeviceModel]]:
        return iter(self.models.items())

    def building_state(self, building: str) -> BuildingState:
        models = self._buildings[building]
        outage = any(isinstance(m, SwitchgearModel) and m.outage for m in models)
        fire = any(
            isinstance(m, FirePanelModel) and m.panel_state == PANEL_ALARM for m in models
        )
        return BuildingState(powered=not outage, fire_alarm=fire)

    def link(self) -> None:
        """Carry each building's power and fire state to its elevators and pumps."""
        for building, models in self._buildings.items():
            state = self.building_state(building)
            for m in models:
                if isinstance(m, ElevatorModel):
                    m.set_power(state.powered)
                    m.set_fire_recall(state.fire_alarm)
                elif isinstance(m, PumpSetModel):
                    m.set_power(state.powered)

    def step(self, now: float) -> None:
        self.link()
        for model in self.models.values():
            model.step(now)
