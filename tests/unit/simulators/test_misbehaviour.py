"""Protocol misbehaviour as data: what a server does with a request, step overlays, and the
scenario file's `simulation:` mapping checked against the site."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from facility.config_errors import ConfigError
from facility.site import load_site
from simulators.misbehaviour import (
    WELL_BEHAVED,
    Action,
    Behaviour,
    Decision,
    Overlay,
    decide,
    effective,
)
from simulators.scenario_file import SimScenario, load_sim_scenario

ROOT = Path(__file__).resolve().parents[3]


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


def test_a_facility_scenario_is_a_sim_scenario() -> None:
    sim = SimScenario.model_validate(
        {"steps": [{"at": "20s", "device": "x", "fault": "entrapment", "duration": "3m"}]}
    )
    assert sim.steps[0].at_s == 20.0 and sim.steps[0].duration_s == 180.0
    with pytest.raises(ValueError, match="unknown fault"):
        SimScenario.model_validate({"steps": [{"at": 1, "device": "x", "fault": "meltdown"}]})
    with pytest.raises(ValueError, match="delay applies"):
        SimScenario.model_validate(
            {"steps": [{"at": 1, "device": "x", "fault": "mute", "delay": "1s"}]}
        )


def test_scenario_checked_against_the_site(tmp_path: Path) -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({
        "simulation": {
            "a-pumps": {"delay": "300ms", "exception_rate": 0.1},
            "b-firepanel": {"segmentation": False, "max_apdu": 128, "exception_rate": 0.5},
            "nowhere": {"mute": True},
        },
        "steps": [
            {"at": "1s", "device": "b-firepanel", "fault": "modbus_busy"},
            {"at": "1s", "device": "a-pumps", "fault": "entrapment"},
            {"at": "1s", "device": "a-pumps", "fault": "slow", "delay": "1s"},
        ],
    }))
    with pytest.raises(ConfigError) as info:
        load_sim_scenario(path, site)
    assert info.value.problems == [
        "steps[0].fault: modbus_busy applies to Modbus devices only",
        "steps[1].fault: entrapment does not apply to a pump_set",
        "simulation.b-firepanel.exception_rate: does not apply to a bacnet device",
        "simulation.nowhere: not a device of demo",
    ]


def test_the_demo_scenario_loads_with_both_loaders() -> None:
    from facility.scenario import FAULT_DEVICE_TYPES, load_scenario

    site = load_site(ROOT / "sites" / "demo.yaml")
    sim = load_sim_scenario(ROOT / "scenarios" / "demo.yaml", site)
    plain = load_scenario(ROOT / "scenarios" / "demo.yaml", site)
    assert {s.fault for s in sim.steps} == set(FAULT_DEVICE_TYPES)  # every fault is shown
    assert [s.fault for s in plain.steps][:2] == ["entrapment", "fire_alarm"]
    assert max(s.at_s + (s.duration_s or 0) for s in sim.steps) <= 8 * 60
