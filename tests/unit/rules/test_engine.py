"""The rule engine as a pure function: delays, latching, unknowns, history, ticks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.definitions import RuleDef, load_rules
from rules.engine import Engine
from rules.engine_types import (
    ClearAlarm,
    DeviceInfo,
    DeviceStatusInput,
    EngineState,
    GatewayStatusInput,
    RaiseAlarm,
    RuleState,
    SaveRuleState,
    TelemetryInput,
    UpdateAlarm,
)

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
ELEVATOR_TAGS = {p: ("elevator",) for p in
                 ("moving", "door_zone", "door_closed", "passengers", "alarm_button")}
PANEL_TAGS = {f"zone_{i}_alarm": ("fire", "fire_alarm") for i in (1, 2, 3)}
DEVICES = {
    "a-elevator-1": DeviceInfo("a-elevator-1", "elevator", "gw-a", ELEVATOR_TAGS),
    "a-firepanel": DeviceInfo("a-firepanel", "fire_panel", "gw-a", PANEL_TAGS),
}
TRAPPED = {"moving": False, "door_zone": False, "door_closed": True, "passengers": 2,
           "alarm_button": False}
FREE = {**TRAPPED, "door_zone": True}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def engine() -> Engine:
    return Engine(load_rules(), DEVICES)


def lift(values: dict, historical: bool = False) -> TelemetryInput:
    return TelemetryInput("a-elevator-1", values, historical)


def raises(actions: list) -> list[RaiseAlarm]:
    return [a for a in actions if isinstance(a, RaiseAlarm)]


def clears(actions: list) -> list[ClearAlarm]:
    return [a for a in actions if isinstance(a, ClearAlarm)]


def run(engine: Engine, steps: list[tuple[float, object]]) -> tuple[EngineState, list]:
    """Feed inputs (or None for a tick) at the given seconds; collect every action."""
    state, out = EngineState(), []
    for t, inp in steps:
        if inp is None:
            state, acts = engine.tick(state, at(t))
        else:
            state, acts = engine.evaluate(state, inp, at(t))
        out += acts
    return state, out


def test_on_delay_not_reached_raises_nothing(engine: Engine) -> None:
    _, actions = run(engine, [(0, lift(TRAPPED)), (5, lift(TRAPPED)), (9.9, None)])
    assert raises(actions) == []


def test_on_delay_reached_raises_once_with_procedure(engine: Engine) -> None:
    state, actions = run(engine, [(0, lift(TRAPPED)), (10, lift(TRAPPED)),
                                  (11, lift(TRAPPED)), (12, None), (30, lift(TRAPPED))])
    [alarm] = raises(actions)
    assert alarm.at == at(10)
    assert (alarm.source, alarm.rule_id, alarm.alarm_type) == ("a-elevator-1", "entrapment",
                                                               "entrapment")
    assert alarm.device == "a-elevator-1" and alarm.gateway == "gw-a"
    assert alarm.procedure == "elevator_entrapment" and alarm.priority == "critical"
    assert alarm.detail["values"]["passengers"] == 2
    assert state.get(("a-elevator-1", "entrapment")).active


def test_tick_raises_when_on_delay_runs_out_without_messages(engine: Engine) -> None:
    _, actions = run(engine, [(0, lift(TRAPPED)), (9, None), (10.5, None), (11, None)])
    [alarm] = raises(actions)
    assert alarm.at == at(10.5)


def test_condition_ending_before_on_delay_cancels_it(engine: Engine) -> None:
    _, actions = run(engine, [(0, lift(TRAPPED)), (5, lift(FREE)), (20, None),
                              (21, lift(TRAPPED)), (30, None)])
    assert raises(actions) == []
    assert clears(actions) == []


def test_off_delay_clears_once(engine: Engine) -> None:
    state, actions = run(engine, [(0, lift(TRAPPED)), (10, None), (20, lift(FREE)),
                                  (21, None), (22, None), (23, lift(FREE)), (40, None)])
    assert len(raises(actions)) == 1
    [clear] = clears(actions)
    assert clear.at == at(22)
    assert not state.get(("a-elevator-1", "entrapment")).active


def test_chatter_within_off_delay_does_not_clear(engine: Engine) -> None:
    _, actions = run(engine, [(0, lift(TRAPPED)), (10, None), (20, lift(FREE)),
                              (21, lift(TRAPPED)), (23, None), (30, None)])
    assert len(raises(actions)) == 1
    assert clears(actions) == []


def test_unknown_condition_keeps_state(engine: Engine) -> None:
    bad = {k: v for k, v in TRAPPED.items() if k != "door_zone"}
    # active alarm, then values go bad for a long time: no clear, no re-raise
    state, actions = run(engine, [(0, lift(TRAPPED)), (10, None), (20, lift(bad)), (100, None)])
    assert len(raises(actions)) == 1 and clears(actions) == []
    assert state.get(("a-elevator-1", "entrapment")).active
    # unknown from the start: nothing at all, no state recorded
    state, actions = run(engine, [(0, lift(bad)), (100, None)])
    assert actions == [] and ("a-elevator-1", "entrapment") not in state.rules


def test_alarm_button_alone_raises_even_with_unknown_motion(engine: Engine) -> None:
    _, actions = run(engine, [(0, lift({"alarm_button": True})), (10, None)])
    assert len(raises(actions)) == 1


def test_historical_telemetry_never_raises(engine: Engine) -> None:
    state, actions = run(engine, [(0, lift(TRAPPED, historical=True)),
                                  (20, lift(TRAPPED, historical=True)), (30, None)])
    assert actions == [] and state.rules == {}


def test_historical_telemetry_does_not_clear_a_live_alarm(engine: Engine) -> None:
    _state, actions = run(engine, [(0, lift(TRAPPED)), (10, None),
                                  (20, lift(FREE, historical=True)), (30, None)])
    assert len(raises(actions)) == 1 and clears(actions) == []


def test_every_state_change_is_saved_and_nothing_else(engine: Engine) -> None:
    state, actions = run(engine, [(0, lift(TRAPPED))])
    [save] = actions
    assert isinstance(save, SaveRuleState)
    assert save.state.condition is True and save.state.since == at(0) and not save.state.active
    _, again = engine.evaluate(state, lift(TRAPPED), at(1))
    assert again == []  # a repeat of the same condition writes nothing


def test_state_survives_a_json_round_trip_and_resumes_the_timer(engine: Engine) -> None:
    state, _ = run(engine, [(0, lift(TRAPPED)), (4, None)])
    key = ("a-elevator-1", "entrapment")
    restored = EngineState({key: RuleState.from_json(state.get(key).to_json())})
    assert restored.get(key) == state.get(key)
    _, actions = engine.tick(restored, at(10))  # a restarted engine, no new message
    [alarm] = raises(actions)
    assert alarm.at == at(10)


def test_fire_alarm_names_the_zone_point(engine: Engine) -> None:
    panel = TelemetryInput("a-firepanel", {"zone_1_alarm": False, "zone_2_alarm": False,
                                           "zone_3_alarm": True})
    _state, actions = engine.evaluate(EngineState(), panel, at(0))
    [alarm] = raises(actions)
    assert alarm.procedure == "fire_alarm_signal" and alarm.alarm_type == "fire_alarm"
    assert alarm.detail["points"] == ["zone_3_alarm"]
    assert "zone_3_alarm" in alarm.message
    # the elevator rule does not apply to a fire panel
    assert all(a.rule_id == "fire_alarm" for a in actions)


def test_an_active_alarm_follows_the_points_it_names(engine: Engine) -> None:
    def panel(*zones: int) -> TelemetryInput:
        return TelemetryInput("a-firepanel", {f"zone_{i}_alarm": i in zones for i in (1, 2, 3)})

    _, actions = run(engine, [(0, panel(1)), (1, panel(1)), (2, panel(1, 3)), (3, panel(1, 3)),
                              (4, panel(3)), (5, panel()), (6, panel(2))])
    fire_alarm = [a for a in actions if getattr(a, "rule_id", "") == "fire_alarm"
                  and not isinstance(a, SaveRuleState)]
    assert [type(a).__name__ for a in fire_alarm] == [
        "RaiseAlarm", "UpdateAlarm", "UpdateAlarm", "ClearAlarm", "RaiseAlarm"]
    raised, second, first_back, _cleared, again = fire_alarm
    assert isinstance(second, UpdateAlarm) and isinstance(first_back, UpdateAlarm)
    assert isinstance(raised, RaiseAlarm) and isinstance(again, RaiseAlarm)
    assert raised.detail["points"] == ["zone_1_alarm"]
    assert second.detail["points"] == ["zone_1_alarm", "zone_3_alarm"]
    assert second.message.endswith("(zone_1_alarm, zone_3_alarm)") and second.at == at(2)
    assert first_back.detail["points"] == ["zone_3_alarm"]
    assert again.detail["points"] == ["zone_2_alarm"]
    # an unchanged zone list (t=1, t=3) is no update: one per change, never per message


def test_points_named_during_the_on_delay_are_the_ones_raised() -> None:
    rules = [r.model_copy(update={"on_delay_s": 5.0}) if r.id == "fire_alarm" else r
             for r in load_rules()]
    eng = Engine(rules, DEVICES)
    zones = {"zone_1_alarm": True, "zone_2_alarm": False, "zone_3_alarm": False}
    _, actions = run(eng, [(0, TelemetryInput("a-firepanel", zones)),
                           (2, TelemetryInput("a-firepanel", {**zones, "zone_2_alarm": True})),
                           (5, None)])
    assert not [a for a in actions if isinstance(a, UpdateAlarm)]  # nothing raised to update
    [alarm] = [a for a in raises(actions) if a.rule_id == "fire_alarm"]
    assert alarm.detail["points"] == ["zone_1_alarm", "zone_2_alarm"] and alarm.at == at(5)


def test_device_offline_and_back(engine: Engine) -> None:
    _state, actions = run(engine, [(0, DeviceStatusInput("a-elevator-1", online=False)),
                                  (5, DeviceStatusInput("a-elevator-1", online=False)),
                                  (9, DeviceStatusInput("a-elevator-1", online=True))])
    [alarm] = raises(actions)
    assert (alarm.rule_id, alarm.priority, alarm.procedure) == ("device_offline", "high", None)
    assert len(clears(actions)) == 1


def test_gateway_offline_has_the_gateway_as_source(engine: Engine) -> None:
    _, actions = engine.evaluate(EngineState(), GatewayStatusInput("gw-a", online=False), at(0))
    [alarm] = raises(actions)
    assert (alarm.source, alarm.device, alarm.gateway) == ("gw-a", None, "gw-a")


def test_unknown_device_is_ignored(engine: Engine) -> None:
    state, actions = engine.evaluate(EngineState(), TelemetryInput("nope", TRAPPED), at(0))
    assert actions == [] and state.rules == {}


def test_evaluate_does_not_mutate_its_input_state(engine: Engine) -> None:
    state, _ = run(engine, [(0, lift(TRAPPED))])
    before = dict(state.rules)
    engine.tick(state, at(20))
    engine.evaluate(state, lift(FREE), at(21))
    assert dict(state.rules) == before


def test_zero_delay_rule_from_override() -> None:
    rule = next(r for r in load_rules() if r.id == "entrapment")
    fast = Engine([rule.model_copy(update={"on_delay_s": 0.0})], DEVICES)
    _, actions = fast.evaluate(EngineState(), lift(TRAPPED), at(0))
    assert len(raises(actions)) == 1


def test_type_clash_counts_as_unknown() -> None:
    rule = RuleDef(id="odd", condition="passengers > 1", priority="low", message="x",
                   device_types=("elevator",))
    _, actions = Engine([rule], DEVICES).evaluate(EngineState(), lift({"passengers": "many"}),
                                                  at(0))
    assert actions == []


def _building_engine() -> tuple[Engine, dict[str, DeviceInfo]]:
    from pathlib import Path

    from facility.site import load_site

    site = load_site(Path(__file__).resolve().parents[3] / "sites" / "demo.yaml")
    return Engine.for_site(load_rules(), site), {}


SWITCH_ON = {"voltage_l1": 230.0, "voltage_l2": 230.0, "voltage_l3": 230.0,
             "incoming_breaker_closed": True}
SWITCH_OFF = {**SWITCH_ON, "voltage_l1": 0.0, "voltage_l2": 0.0, "voltage_l3": 0.0}
PUMPS_OK = {"outlet_pressure": 0.45, "pressure_setpoint": 0.45}
PUMPS_LOW = {**PUMPS_OK, "outlet_pressure": 0.1}


def test_power_outage_hysteresis_groups_and_releases_after_its_release_time() -> None:
    engine, _ = _building_engine()
    sw = lambda v: TelemetryInput("a-switchgear", v)  # noqa: E731
    pumps = lambda v: TelemetryInput("a-pumps", v)  # noqa: E731
    _, actions = run(engine, [
        (0, sw(SWITCH_ON)), (0, pumps(PUMPS_LOW)),     # low before the outage is seen
        (1, sw(SWITCH_OFF)), (3, None),                # outage raised at 3 s (2 s on-delay)
        (11, None),                                    # pumps raised at 10 s: grouped
        (20, sw({**SWITCH_ON, "voltage_l1": 180.0})),  # in the deadband (160-200 V): holds
        (40, None), (50, sw(SWITCH_ON)), (61, None),   # back at 50 s, cleared at 60 s
        (100, None), (121, None),                      # released 60 s after the clear
    ])
    kinds = [(type(a).__name__, a.at) for a in actions if not isinstance(a, SaveRuleState)]
    outage = [a for a in actions if isinstance(a, RaiseAlarm) and a.rule_id == "power_outage"]
    assert len(outage) == 1 and outage[0].at == at(3)
    [low] = [a for a in actions if isinstance(a, RaiseAlarm) and a.rule_id == "low_pressure"]
    # raised before the outage (10 s on-delay from 0 s is at 10 s, after the outage at 3 s)
    assert low.suppressed_by == ("a-switchgear", "power_outage")
    assert ("ClearAlarm", at(61)) in kinds
    assert ("UngroupAlarms", at(121)) in kinds and ("UngroupAlarms", at(100)) not in kinds


def test_a_parent_raise_groups_children_already_active() -> None:
    engine, _ = _building_engine()
    _, actions = run(engine, [
        (0, TelemetryInput("a-switchgear", SWITCH_ON)),
        (0, TelemetryInput("a-pumps", PUMPS_LOW)), (10, None),   # low pressure, unsuppressed
        (11, TelemetryInput("a-switchgear", SWITCH_OFF)), (13, None),
    ])
    from rules.engine_types import GroupAlarms

    [grp] = [a for a in actions if isinstance(a, GroupAlarms)]
    assert grp.parent == ("a-switchgear", "power_outage")
    assert grp.children == (("a-pumps", "low_pressure"),) and grp.since == at(11)


def test_changed_points_filter_skips_rules_whose_points_did_not_change(engine: Engine) -> None:
    state, _ = run(engine, [(0, lift(TRAPPED))])
    # the same values, but the input says only car_floor changed: entrapment is not
    # evaluated, so even a wrong door_zone is not seen
    _, acts = engine.evaluate(state, TelemetryInput("a-elevator-1", FREE, False,
                                                    frozenset({"car_floor"})), at(1))
    assert acts == []
    _, acts = engine.evaluate(state, TelemetryInput("a-elevator-1", FREE, False,
                                                    frozenset({"door_zone"})), at(1))
    assert [a.state.condition for a in acts if isinstance(a, SaveRuleState)] == [False]
