"""The elevator model: plausible travel, no false entrapment, entrapment and release."""

from __future__ import annotations

import pytest

from simulators.models import UnsupportedFault
from simulators.models.elevator import ElevatorModel, ElevatorParams, Phase

TICK_S = 0.2


def entrapped(points: dict[str, bool | int | float]) -> bool:
    """The entrapment rule's condition: stopped outside the door zone, doors closed, people."""
    return (
        not points["moving"]
        and not points["door_zone"]
        and bool(points["door_closed"])
        and int(points["passengers"]) > 0
    )


def run(model: ElevatorModel, start: float, end: float) -> list[dict[str, bool | int | float]]:
    samples = []
    t = start
    while t <= end:
        model.step(t)
        samples.append(model.points())
        t = round(t + TICK_S, 6)
    return samples


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_without_faults_the_car_serves_floors_and_never_looks_entrapped(seed: int) -> None:
    model = ElevatorModel(seed=seed)
    samples = run(model, 0.0, 4 * 3600.0)
    longest = streak = 0
    for p in samples:
        streak = streak + 1 if entrapped(p) else 0
        longest = max(longest, streak)
    assert longest * TICK_S <= 2.0
    # and it really does something: travels, stops at many floors, carries people
    assert model.run_count > 200
    assert len({p["car_floor"] for p in samples if not p["moving"]}) >= 10
    assert any(p["moving"] and p["passengers"] for p in samples)
    assert any(not p["door_closed"] and p["door_zone"] for p in samples)
    assert not any(p["moving"] and not p["door_closed"] for p in samples)
    assert {p["direction"] for p in samples} == {0, 1, 2}


def test_same_seed_same_behaviour() -> None:
    assert run(ElevatorModel(seed=7), 0, 300) == run(ElevatorModel(seed=7), 0, 300)
    assert run(ElevatorModel(seed=7), 0, 300) != run(ElevatorModel(seed=8), 0, 300)


def test_entrapment_stops_the_car_between_floors_and_the_alarm_button_follows() -> None:
    params = ElevatorParams(alarm_delay_s=5.0)
    model = ElevatorModel(seed=4, params=params)
    run(model, 0.0, 100.0)
    model.set_fault("entrapment", True)
    first = run(model, 100.2, 104.0)
    assert all(entrapped(p) for p in first)
    assert all(p["speed_mps"] == 0 and p["direction"] == 0 for p in first)
    assert not any(p["alarm_button"] for p in first)
    later = run(model, 104.2, 200.0)
    assert all(entrapped(p) for p in later)
    assert later[-1]["alarm_button"] is True
    assert later[-1]["load_kg"] == later[-1]["passengers"] * params.kg_per_passenger


def test_release_levels_to_a_floor_opens_doors_and_passengers_leave() -> None:
    model = ElevatorModel(seed=4)
    run(model, 0.0, 50.0)
    model.set_fault("entrapment", True)
    stuck = run(model, 50.2, 60.0)[-1]
    model.set_fault("entrapment", False)
    after = run(model, 60.2, 80.0)
    assert after[0]["moving"] and not after[0]["alarm_button"]
    assert after[0]["speed_mps"] == pytest.approx(ElevatorParams().leveling_speed_mps)
    opened = next(p for p in after if not p["door_closed"])
    assert opened["door_zone"] and not opened["moving"]
    assert abs(int(opened["car_floor"]) - int(stuck["car_floor"])) <= 1
    assert any(not p["door_closed"] and p["passengers"] == 0 for p in after)
    assert not any(entrapped(p) for p in after)


def test_entrapment_while_travelling_stops_where_the_car_is() -> None:
    model = ElevatorModel(seed=9)
    t = 0.0
    while not (model.phase is Phase.TRAVEL and not model.in_door_zone):
        t = round(t + TICK_S, 6)
        model.step(t)
    position = model.position_m
    model.set_fault("entrapment", True)
    run(model, t + TICK_S, t + 10)
    assert model.position_m == position
    assert entrapped(model.points())


def test_entrapment_at_the_top_floor_stays_inside_the_shaft() -> None:
    params = ElevatorParams(floors=2)
    model = ElevatorModel(seed=1, params=params)
    model.step(0.0)
    model.position_m = params.floor_height_m  # parked at the top landing
    model.set_fault("entrapment", True)
    model.step(1.0)
    assert 0 < model.position_m < params.floor_height_m
    assert entrapped(model.points())


def test_faults_it_cannot_play_are_refused() -> None:
    with pytest.raises(UnsupportedFault) as info:
        ElevatorModel().set_fault("power_outage", True)
    assert info.value.fault == "power_outage"
    assert info.value.device_type == "elevator"
