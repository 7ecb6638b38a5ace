"""Protocol misbehaviour as data: what a server does with a request, step overlays and bad
values refused (the scenario file's `simulation:` mapping: test_scenario.py)."""

from __future__ import annotations

import random

import pytest

from simulators.misbehaviour import (
    WELL_BEHAVED,
    Action,
    Behaviour,
    Decision,
    Overlay,
    decide,
    effective,
)


def behaviour(**kw: object) -> Behaviour:
    return Behaviour.model_validate(kw)


def test_well_behaved_answers_at_once() -> None:
    assert decide(WELL_BEHAVED, 3, 0, 10, random.Random(1)) == Decision(Action.ANSWER)


def test_exception_on_a_configured_address_only_when_the_request_covers_it() -> None:
    b = behaviour(exceptions=[{"table": "input", "address": 12, "code": 2}], delay="50ms")
    rng = random.Random(1)
    assert decide(b, 4, 10, 4, rng) == Decision(Action.EXCEPTION, 0.05, 2)
    assert decide(b, 4, 12, 1, rng).action is Action.EXCEPTION
    assert decide(b, 4, 13, 5, rng) == Decision(Action.ANSWER, 0.05)
    assert decide(b, 3, 10, 4, rng).action is Action.ANSWER  # holding, not input


def test_exception_rate_and_drop_rate_are_drawn_from_the_generator() -> None:
    b = behaviour(exception_rate=0.25, exception_code=6)
    rng = random.Random(7)
    actions = [decide(b, 3, 0, 1, rng) for _ in range(2000)]
    busy = sum(d == Decision(Action.EXCEPTION, 0.0, 6) for d in actions)
    assert 400 < busy < 600
    dropped = [decide(behaviour(drop_rate=1.0), 3, 0, 1, rng).action for _ in range(10)]
    assert set(dropped) == {Action.DROP}


def test_mute_never_answers() -> None:
    assert decide(behaviour(mute=True), 3, 0, 1, random.Random()).action is Action.IGNORE


def test_step_overlays_add_to_the_base_behaviour_and_go_away() -> None:
    base = behaviour(delay="100ms", exceptions=[{"table": "holding", "address": 5}])
    busy = effective(base, [Overlay("modbus_busy")])
    assert busy.exception_rate == 1.0 and busy.exception_code == 6
    assert busy.exceptions == base.exceptions
    slow = effective(base, [Overlay("slow", 2.0), Overlay("mute")])
    assert slow.delay_s == 2.0 and slow.mute
    assert effective(base, [Overlay("slow", 0.01)]).delay_s == 0.1  # never faster than base
    assert effective(base, [Overlay("modbus_device_failure")]).exception_code == 4
    assert effective(base, []) == base
    with pytest.raises(ValueError):
        effective(base, [Overlay("entrapment")])


def test_bad_behaviour_values_are_refused() -> None:
    with pytest.raises(ValueError, match="max_apdu"):
        behaviour(max_apdu=300)
    with pytest.raises(ValueError):
        behaviour(exception_code=3)
    with pytest.raises(ValueError):
        behaviour(dealy="1s")


def test_point_steps_overlay_a_reliability_or_out_of_service_on_one_object() -> None:
    base = behaviour(points={"zone_2_alarm": {"out_of_service": True}},
                     cov_refused=["zone_3_alarm"])
    assert base.cov_refused == {"zone_3_alarm"}
    faulty = effective(base, [Overlay("point_fault", point="zone_1_alarm",
                                      reliability="open-loop"),
                              Overlay("out_of_service", point="zone_1_alarm")])
    z1 = faulty.points["zone_1_alarm"]
    assert z1.reliability == "open-loop" and z1.out_of_service
    assert faulty.points["zone_2_alarm"] == base.points["zone_2_alarm"]
    assert effective(base, [Overlay("point_fault", point="zone_2_alarm")]).points[
        "zone_2_alarm"].reliability == "unreliable-other"
    assert effective(base, []) == base and "zone_1_alarm" not in base.points
    with pytest.raises(ValueError, match="unknown reliability 'broken'"):
        behaviour(points={"zone_1_alarm": {"reliability": "broken"}})
