"""Consequences across the devices of one building, on a simulated clock: a power outage on
the switchgear stops that building's elevators and pumps (and no other building's); a fire
alarm recalls that building's elevators."""

from __future__ import annotations

from simulators.estate import Estate
from simulators.models import DeviceModel, build_model
from simulators.models.elevator import ElevatorModel, FaultCode, ServiceMode

BUILDING_OF = {
    "a-lift": "a", "a-pumps": "a", "a-gear": "a", "a-panel": "a",
    "b-lift": "b", "b-pumps": "b", "b-gear": "b",
}
TYPES = {"lift": "elevator", "pumps": "pump_set", "gear": "switchgear", "panel": "fire_panel"}


def estate() -> tuple[Estate, dict[str, DeviceModel]]:
    models = {d: build_model(TYPES[d.split("-")[1]], seed=i) for i, d in enumerate(BUILDING_OF)}
    return Estate(models, BUILDING_OF), models


def advance(e: Estate, start: float, end: float, tick_s: float = 0.5) -> float:
    t = start
    while t < end:
        t += tick_s
        e.step(t)
    return t


def test_power_outage_stops_the_buildings_elevators_and_pumps_only() -> None:
    e, m = estate()
    t = advance(e, 0.0, 60.0)
    m["a-gear"].set_fault("power_outage", True)
    t = advance(e, t, t + 30.0)
    a_lift, a_pumps = m["a-lift"].points(), m["a-pumps"].points()
    assert a_lift["fault_code"] == FaultCode.POWER_LOST and not a_lift["moving"]
    assert a_lift["service_mode"] == ServiceMode.OUT_OF_SERVICE
    assert not a_pumps["pump_1_running"] and not a_pumps["pump_2_running"]
    assert float(a_pumps["outlet_pressure"]) < 0.1
    b_pumps = m["b-pumps"].points()
    assert m["b-lift"].points()["fault_code"] == 0
    assert b_pumps["pump_1_running"] or b_pumps["pump_2_running"]
    assert float(b_pumps["outlet_pressure"]) > 0.4
    m["a-gear"].set_fault("power_outage", False)
    advance(e, t, t + 60.0)
    assert m["a-lift"].points()["fault_code"] == 0
    assert float(m["a-pumps"].points()["outlet_pressure"]) > 0.4


def test_an_outage_catching_a_car_between_floors_with_people_is_an_entrapment() -> None:
    e, m = estate()
    lift = m["a-lift"]
    assert isinstance(lift, ElevatorModel)
    t = 0.0
    while not (lift.points()["moving"] and lift.passengers and not lift.in_door_zone):
        t = advance(e, t, t + 0.1, tick_s=0.1)
        assert t < 3600
    m["a-gear"].set_fault("power_outage", True)
    advance(e, t, t + 20.0)
    p = lift.points()
    assert not p["moving"] and not p["door_zone"] and p["door_closed"] and p["passengers"]
    assert p["alarm_button"] is True


def test_fire_alarm_recalls_the_buildings_elevators() -> None:
    e, m = estate()
    t = advance(e, 0.0, 30.0)
    m["a-panel"].set_fault("fire_alarm", True, 2)
    t = advance(e, t, t + 90.0)
    a = m["a-lift"].points()
    assert a["service_mode"] == ServiceMode.FIRE_SERVICE
    assert a["car_floor"] == 1 and not a["door_closed"]
    assert m["b-lift"].points()["service_mode"] == ServiceMode.NORMAL
    m["a-panel"].set_fault("fire_alarm", False, 2)
    advance(e, t, t + 1.0)
    assert m["a-lift"].points()["service_mode"] == ServiceMode.NORMAL
