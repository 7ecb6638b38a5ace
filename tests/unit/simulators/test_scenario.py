"""The one scenario schema (simulators.scenario): steps of device faults and protocol
misbehaviour, the `simulation:` mapping, checks against the site, and the loader that both
`facility simulate` and `facility demo` call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from facility.config_errors import ConfigError
from facility.settings import CommonSettings
from facility.site import load_site
from simulators.misbehaviour import MISBEHAVIOURS
from simulators.scenario import FAULT_DEVICE_TYPES, Scenario, load_scenario
from stack.cli import build_parser
from stack.demo import run_demo

ROOT = Path(__file__).resolve().parents[3]
DEMO_SITE = ROOT / "sites" / "demo.yaml"
DEMO_STEPS = [  # the first two steps of scenarios/demo.yaml
    {"at": "20s", "device": "a-elevator-2", "fault": "entrapment", "duration": "3m"},
    {"at": "40s", "device": "b-firepanel", "fault": "fire_alarm", "zone": 3, "duration": "2m"},
]


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_steps_parse_durations_and_refuse_unknown_faults_and_stray_delays() -> None:
    sc = Scenario.model_validate(
        {"steps": [{"at": "20s", "device": "x", "fault": "entrapment", "duration": "3m"}]}
    )
    assert sc.steps[0].at_s == 20.0 and sc.steps[0].duration_s == 180.0
    with pytest.raises(ValueError, match="unknown fault 'meltdown'"):
        Scenario.model_validate({"steps": [{"at": 1, "device": "x", "fault": "meltdown"}]})
    with pytest.raises(ValueError, match="delay applies"):
        Scenario.model_validate(
            {"steps": [{"at": 1, "device": "x", "fault": "mute", "delay": "1s"}]}
        )


def test_scenario_checked_against_the_site(tmp_path: Path) -> None:
    site = load_site(DEMO_SITE)
    path = write(tmp_path, {
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
    })
    with pytest.raises(ConfigError) as info:
        load_scenario(path, site)
    assert info.value.problems == [
        "steps[0].fault: modbus_busy applies to Modbus devices only",
        "steps[1].fault: entrapment does not apply to a pump_set",
        "simulation.b-firepanel.exception_rate: does not apply to a bacnet device",
        "simulation.nowhere: not a device of demo",
    ]


def test_point_steps_name_a_point_of_a_bacnet_device(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="point is required"):
        Scenario.model_validate({"steps": [{"at": 1, "device": "x", "fault": "point_fault"}]})
    with pytest.raises(ValueError, match="point is required"):
        Scenario.model_validate({"steps": [{"at": 1, "device": "x", "fault": "mute",
                                            "point": "zone_1_alarm"}]})
    with pytest.raises(ValueError, match="reliability applies"):
        Scenario.model_validate({"steps": [{"at": 1, "device": "x", "fault": "out_of_service",
                                            "point": "p", "reliability": "open-loop"}]})
    with pytest.raises(ValueError, match="unknown reliability"):
        Scenario.model_validate({"steps": [{"at": 1, "device": "x", "fault": "point_fault",
                                            "point": "p", "reliability": "loose"}]})
    site = load_site(DEMO_SITE)
    path = write(tmp_path, {
        "simulation": {"b-firepanel": {"cov_refused": ["zone_9_alarm"],
                                       "points": {"zone_1_alarm": {"out_of_service": True}}}},
        "steps": [
            {"at": "1s", "device": "a-pumps", "fault": "out_of_service", "point": "x"},
            {"at": "1s", "device": "b-firepanel", "fault": "point_fault", "point": "nope"},
            {"at": "1s", "device": "b-firepanel", "fault": "point_fault",
             "point": "zone_2_alarm", "reliability": "open-loop", "duration": "1m"},
        ],
    })
    with pytest.raises(ConfigError) as info:
        load_scenario(path, site)
    assert info.value.problems == [
        "steps[0].fault: out_of_service applies to BACnet devices only",
        "steps[1].point: b-firepanel has no point nope",
        "simulation.b-firepanel.cov_refused: b-firepanel has no point zone_9_alarm",
    ]


def test_the_demo_scenario_shows_every_device_fault_and_starts_as_documented() -> None:
    sc = load_scenario(ROOT / "scenarios" / "demo.yaml", load_site(DEMO_SITE))
    faults = {s.fault for s in sc.steps}
    assert faults - set(MISBEHAVIOURS) == set(FAULT_DEVICE_TYPES)  # every device fault shown
    assert faults & set(MISBEHAVIOURS)  # and some protocol misbehaviour
    assert [(s.fault, s.at_s) for s in sc.steps[:2]] == [("entrapment", 20), ("fire_alarm", 40)]
    assert all(s.fault in FAULT_DEVICE_TYPES for s in sc.steps if s.at_s <= 60)  # a calm start
    assert max(s.at_s + (s.duration_s or 0) for s in sc.steps) <= 8 * 60


def test_a_demo_scenario_may_carry_misbehaviour_steps_and_a_simulation_mapping(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, {
        "name": "demo with misbehaviour",
        "simulation": {"a-pumps": {"delay": "100ms"}, "b-firepanel": {"max_apdu": 480}},
        "steps": [*DEMO_STEPS,
                  {"at": "60s", "device": "b-pumps", "fault": "slow", "delay": "250ms",
                   "duration": "30s"},
                  {"at": "90s", "device": "a-switchgear", "fault": "modbus_busy",
                   "duration": "10s"}],
    })
    sc = load_scenario(path, load_site(DEMO_SITE))  # what `facility demo` calls
    assert [s.fault for s in sc.steps] == ["entrapment", "fire_alarm", "slow", "modbus_busy"]
    assert sc.steps[2].slow_delay_s == 0.25
    assert sc.simulation["a-pumps"].delay_s == 0.1
    assert sc.simulation["b-firepanel"].max_apdu == 480


def test_facility_demo_refuses_a_bad_step_with_its_path_before_starting_anything(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, {
        "simulation": {"a-pumps": {"delay": "100ms"}},
        "steps": [*DEMO_STEPS,
                  {"at": "60s", "device": "b-pumps", "fault": "slow", "duration": "30s"},
                  {"at": "70s", "device": "a-firepanel", "fault": "drop_connections"}],
    })
    state_dir = tmp_path / "state"
    args = build_parser().parse_args(
        ["demo", "--scenario", str(path), "--state-dir", str(state_dir)]
    )
    with pytest.raises(ConfigError) as info:
        run_demo(args, CommonSettings(site=DEMO_SITE))
    assert info.value.file == str(path.resolve())
    # the misbehaviour step and the simulation mapping pass; only the bad step is named
    assert info.value.problems == [
        "steps[3].fault: drop_connections applies to Modbus devices only"
    ]
    assert not state_dir.exists()  # refused before any database, broker or child


def test_facility_demo_refuses_an_unknown_fault_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, {"steps": [*DEMO_STEPS,
                                      {"at": "1m", "device": "a-pumps", "fault": "flood"}]})
    args = build_parser().parse_args(
        ["demo", "--scenario", str(path), "--state-dir", str(tmp_path / "state")]
    )
    with pytest.raises(ConfigError) as info:
        run_demo(args, CommonSettings(site=DEMO_SITE))
    [problem] = info.value.problems
    assert problem.startswith("steps[2].fault: Value error, unknown fault 'flood'; known: ")
