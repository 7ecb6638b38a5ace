"""The elevator's other faults and the building's consequences on it, on a simulated clock:
door open while moving, stopped outside the door zone, power loss, fire recall; fault codes
and service modes as the profile's raw values."""

from __future__ import annotations

import pytest

from simulators.models.elevator import ElevatorModel, FaultCode, Phase, ServiceMode
from tests.unit.simulators.test_rule_faults import TICK_S, run


def travelling(seed: int, *, with_passengers: bool = False) -> tuple[ElevatorModel, float]:
    """A model caught travelling between floors (optionally with people aboard)."""
    model = ElevatorModel(seed=seed)
    t = 0.0
    while not (
        model.phase is Phase.TRAVEL
        and not model.in_door_zone
        and (model.passengers > 0 or not with_passengers)
    ):
        t = round(t + TICK_S, 6)
        model.step(t)
        assert t < 3600
    return model, t


def test_door_open_while_moving_shows_open_doors_only_while_the_car_runs() -> None:
    model = ElevatorModel(seed=3)
    run(model, 0.0, 30.0)
    model.set_fault("door_open_while_moving", True)
    during = run(model, 30.2, 400.0)
    moving = [p for p in during if p["moving"]]
    assert moving and all(not p["door_closed"] for p in moving)
    assert all(p["fault_code"] == FaultCode.DOOR_OPEN_WHILE_MOVING for p in during)
    model.set_fault("door_open_while_moving", False)
    after = run(model, 400.2, 800.0)
    assert all(p["door_closed"] for p in after if p["moving"])
    assert all(p["fault_code"] == 0 for p in after)


def test_stopped_outside_door_zone_is_an_empty_car_out_of_service() -> None:
    model = ElevatorModel(seed=5)
    run(model, 0.0, 40.0)
    model.set_fault("stopped_outside_door_zone", True)
    during = run(model, 40.2, 100.0)
    for p in during:
        assert not p["moving"] and not p["door_zone"] and p["door_closed"]
        assert p["passengers"] == 0 and p["alarm_button"] is False  # not an entrapment
        assert p["fault_code"] == FaultCode.OUTSIDE_DOOR_ZONE
        assert p["service_mode"] == ServiceMode.OUT_OF_SERVICE
    model.set_fault("stopped_outside_door_zone", False)
    after = run(model, 100.2, 130.0)
    assert after[0]["moving"] and after[0]["service_mode"] == ServiceMode.NORMAL
    assert any(p["door_zone"] and not p["door_closed"] for p in after)


def test_power_loss_stops_a_travelling_car_between_floors_and_traps_its_passengers() -> None:
    model, t = travelling(seed=11, with_passengers=True)
    position = model.position_m
    model.set_power(False)
    during = run(model, t + TICK_S, t + 30)
    assert model.position_m == position
    for p in during:
        assert not p["moving"] and not p["door_zone"] and p["door_closed"]
        assert p["passengers"] > 0
        assert p["fault_code"] == FaultCode.POWER_LOST
        assert p["service_mode"] == ServiceMode.OUT_OF_SERVICE
    assert during[-1]["alarm_button"] is True  # people press it after alarm_delay_s
    model.set_power(True)
    after = run(model, t + 30.2, t + 60)
    assert after[0]["moving"] and after[0]["speed_mps"] == pytest.approx(0.3)
    opened = next(p for p in after if not p["door_closed"])
    assert opened["door_zone"] and not opened["moving"]
    assert any(p["passengers"] == 0 for p in after if not p["door_closed"])


def test_power_loss_at_a_landing_leaves_the_car_there_and_it_resumes_later() -> None:
    model = ElevatorModel(seed=2)
    model.step(0.0)  # idle at floor 1
    model.set_power(False)
    during = run(model, 0.2, 120.0)
    assert all(not p["moving"] and p["door_zone"] for p in during)
    assert all(p["fault_code"] == FaultCode.POWER_LOST for p in during)
    assert model.run_count == 0
    model.set_power(True)
    run(model, 120.2, 200.0)
    assert model.run_count > 0


def test_entrapment_outlasts_a_power_loss_that_ends_first() -> None:
    model = ElevatorModel(seed=4)
    run(model, 0.0, 20.0)
    model.set_fault("entrapment", True)
    model.set_power(False)
    run(model, 20.2, 30.0)
    model.set_power(True)
    still = run(model, 30.2, 40.0)
    assert all(not p["moving"] and not p["door_zone"] for p in still)
    assert still[-1]["fault_code"] == FaultCode.SAFETY_CIRCUIT
    model.set_fault("entrapment", False)
    assert run(model, 40.2, 41.0)[-1]["moving"]


def test_fire_recall_sends_the_car_to_floor_1_and_parks_it_with_doors_open() -> None:
    model, t = travelling(seed=8)
    model.set_fire_recall(True)
    during = run(model, t + TICK_S, t + 90)
    parked = during[-20:]
    for p in parked:
        assert p["car_floor"] == 1 and not p["moving"] and not p["door_closed"]
        assert p["passengers"] == 0 and p["service_mode"] == ServiceMode.FIRE_SERVICE
    assert all(p["direction"] in (0, 2) for p in during)  # never away from the main floor
    model.set_fire_recall(False)
    after = run(model, t + 90.2, t + 200)
    assert after[-1]["service_mode"] == ServiceMode.NORMAL
    assert any(p["moving"] for p in after)
