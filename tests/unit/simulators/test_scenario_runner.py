"""The scenario runner: events in time order, once each, applied to models and logged."""

from __future__ import annotations

import logging

import pytest

from simulators.models.elevator import ElevatorModel
from simulators.models.fire_panel import FirePanelModel
from simulators.scenario import Scenario
from simulators.scenario_runner import FaultEvent, ScenarioRunner, apply_event


def scenario(*steps: dict[str, object]) -> Scenario:
    return Scenario.model_validate({"steps": list(steps)})


def test_events_come_due_in_order_once_each() -> None:
    sc = scenario(
        {"at": "20s", "device": "a-elevator-2", "fault": "entrapment", "duration": "10s"},
        {"at": 5, "device": "b-firepanel", "fault": "fire_alarm", "zone": 3},
    )
    runner = ScenarioRunner(sc, {"a-elevator-2", "b-firepanel"})
    assert runner.due(4.9) == []
    assert runner.due(5.0) == [FaultEvent(5.0, "b-firepanel", "fire_alarm", True, 3)]
    assert runner.due(29.0) == [FaultEvent(20.0, "a-elevator-2", "entrapment", True)]
    assert runner.due(29.0) == []
    assert not runner.finished
    assert runner.due(1000.0) == [FaultEvent(30.0, "a-elevator-2", "entrapment", False)]
    assert runner.finished


def test_an_end_comes_before_a_start_at_the_same_time() -> None:
    sc = scenario(
        {"at": 10, "device": "p", "fault": "fire_alarm", "duration": 5},
        {"at": 15, "device": "p", "fault": "fire_alarm", "duration": 5},
    )
    events = ScenarioRunner(sc, {"p"}).due(15.0)
    assert [(e.at_s, e.active) for e in events] == [(10, True), (15, False), (15, True)]


def test_steps_for_devices_not_simulated_are_dropped() -> None:
    sc = scenario({"at": 0, "device": "elsewhere", "fault": "entrapment"})
    runner = ScenarioRunner(sc, {"a-elevator-1"})
    assert runner.finished and runner.due(100.0) == []
    assert ScenarioRunner(None, {"x"}).finished


def test_apply_event_sets_and_clears_the_fault_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    panel = FirePanelModel()
    caplog.set_level(logging.INFO, logger="simulators.scenario_runner")
    assert apply_event(
        FaultEvent(1.0, "b-firepanel", "fire_alarm", True, 3), {"b-firepanel": panel}
    )
    assert panel.points()["zone_3_alarm"] is True
    assert apply_event(
        FaultEvent(2.0, "b-firepanel", "fire_alarm", False, 3), {"b-firepanel": panel}
    )
    assert panel.points()["zone_3_alarm"] is False
    messages = [r.getMessage() for r in caplog.records]
    assert "fault fire_alarm zone 3 on b-firepanel started" in messages
    assert "fault fire_alarm zone 3 on b-firepanel ended" in messages


def test_apply_event_logs_and_survives_a_fault_the_model_cannot_play(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = FaultEvent(1.0, "a-elevator-1", "fire_alarm", True)
    assert not apply_event(event, {"a-elevator-1": ElevatorModel()})
    assert any(
        r.levelno == logging.ERROR and "fire_alarm" in r.getMessage()
        for r in caplog.records
    )


def test_misbehaviour_steps_come_due_with_their_delay() -> None:
    sc = Scenario.model_validate(
        {"steps": [
            {"at": "1s", "device": "a-pumps", "fault": "slow", "delay": "500ms", "duration": 2},
            {"at": "2s", "device": "a-pumps", "fault": "modbus_busy"},
            {"at": "3s", "device": "a-pumps", "fault": "slow"},
        ]}
    )
    runner = ScenarioRunner(sc, {"a-pumps"})
    assert runner.due(10.0) == [
        FaultEvent(1.0, "a-pumps", "slow", True, None, 0.5),
        FaultEvent(2.0, "a-pumps", "modbus_busy", True),
        FaultEvent(3.0, "a-pumps", "slow", False, None, 0.5),
        FaultEvent(3.0, "a-pumps", "slow", True, None, 2.0),  # the default delay
    ]
