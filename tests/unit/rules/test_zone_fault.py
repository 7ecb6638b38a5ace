"""A fire-alarm zone the panel reports bad raises a fire-system trouble: the quality functions
of the condition language, the bad points the rules remember, and the built-in rule
``fire_zone_fault`` (pure: no I/O, the clock is an argument)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from facility.messages import Quality, Telemetry, Value
from rules.current import CurrentValues
from rules.definitions import RuleDef, load_rules
from rules.engine import Engine
from rules.engine_types import (
    Action,
    ClearAlarm,
    DeviceInfo,
    DeviceStatusInput,
    EngineState,
    GatewayStatusInput,
    RaiseAlarm,
    TelemetryInput,
    UpdateAlarm,
)
from rules.expression import Condition, ConditionError, Context
from rules.message_reader import telemetry

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
TAGS = {"zone_1_alarm": ("fire", "fire_alarm"), "zone_2_alarm": ("fire", "fire_alarm"),
        "zone_1_trouble": ("fire", "fire_trouble")}
PANEL = "a-firepanel"
DEVICES = {PANEL: DeviceInfo(PANEL, "fire_panel", "gw-a", TAGS)}


def ev(text: str, values: Mapping[str, Value], bad: dict[str, str]) -> bool | None:
    return Condition.compile(text).evaluate(Context(values, TAGS, bad))


def test_any_bad_tag_is_true_for_a_reported_bad_point_whatever_the_others() -> None:
    assert ev('any_bad_tag("fire_alarm")', {"zone_2_alarm": False}, {"zone_1_alarm": ""})
    # the other zone never reported: one bad zone is enough
    assert ev('any_bad_tag("fire_alarm")', {}, {"zone_1_alarm": "fault,open-loop"}) is True


def test_any_bad_tag_is_false_when_all_good_and_unknown_when_one_was_never_reported() -> None:
    good = {"zone_1_alarm": False, "zone_2_alarm": True}  # a fire is a value, not a fault
    assert ev('any_bad_tag("fire_alarm")', good, {}) is False
    assert ev('any_bad_tag("fire_alarm")', {"zone_1_alarm": False}, {}) is None
    assert ev('any_bad_tag("fire_alarm")', {}, {}) is None
    # another tag's bad point is not this tag's
    assert ev('any_bad_tag("fire_alarm")', good, {"zone_1_trouble": "fault"}) is False
    assert ev('any_bad_tag("fire_trouble")', good, {"zone_1_trouble": "fault"}) is True
    assert ev('any_bad_tag("no_such_tag")', good, {}) is False


def test_count_bad_tag_counts_and_is_unknown_while_a_point_is_unknown() -> None:
    both_bad = {"zone_1_alarm": "fault", "zone_2_alarm": "out-of-service"}
    assert ev('count_bad_tag("fire_alarm") == 2', {}, both_bad) is True
    assert ev('count_bad_tag("fire_alarm") == 1', {"zone_2_alarm": False},
              {"zone_1_alarm": ""}) is True
    assert ev('count_bad_tag("fire_alarm") == 0', {"zone_1_alarm": False, "zone_2_alarm": False},
              {}) is True
    assert ev('count_bad_tag("fire_alarm") >= 1', {}, {"zone_1_alarm": ""}) is None


def test_bad_tag_functions_compile_with_their_tag_and_refuse_anything_but_a_quoted_tag() -> None:
    assert Condition.compile('count_bad_tag("zone") > 1').tags == {"zone"}
    for text in ("any_bad_tag(zone)", 'any_bad_tag("a", "b")', "count_bad_tag()"):
        with pytest.raises(ConditionError):
            Condition.compile(text)


def tm(points: dict[str, Value], quality: dict[str, Quality] | None = None,
       flags: dict[str, str] | None = None, seq: int = 1) -> Telemetry:
    return Telemetry(ts=T0, seq=seq, session="s", points=points, quality=quality or {},
                     flags=flags)


def test_current_values_keep_the_bad_points_with_their_flags_apart_from_the_values() -> None:
    cv = CurrentValues()
    values, changed = cv.merge(PANEL, tm({"zone_1_alarm": False, "zone_2_alarm": False}))
    assert cv.bad(PANEL) == {}
    values, changed = cv.merge(PANEL, tm({}, {"zone_1_alarm": "bad"},
                                         {"zone_1_alarm": "fault,open-loop"}))
    assert cv.bad(PANEL) == {"zone_1_alarm": "fault,open-loop"}
    assert "zone_1_alarm" not in values and changed == {"zone_1_alarm"}
    # the same report again changes nothing; new words from the device are a change
    assert cv.merge(PANEL, tm({}, {"zone_1_alarm": "bad"},
                              {"zone_1_alarm": "fault,open-loop"}))[1] == frozenset()
    assert cv.merge(PANEL, tm({}, {"zone_1_alarm": "bad"}))[1] == {"zone_1_alarm"}
    assert cv.bad(PANEL) == {"zone_1_alarm": ""}
    # a value again: good, no longer bad
    values, changed = cv.merge(PANEL, tm({"zone_1_alarm": False}))
    assert cv.bad(PANEL) == {} and values["zone_1_alarm"] is False
    assert changed == {"zone_1_alarm"}


def test_stale_and_offline_forget_a_bad_point_it_becomes_unknown() -> None:
    cv = CurrentValues()
    cv.merge(PANEL, tm({}, {"zone_1_alarm": "bad", "zone_2_alarm": "bad"}))
    _, changed = cv.merge(PANEL, tm({}, {"zone_1_alarm": "stale"}))
    assert cv.bad(PANEL) == {"zone_2_alarm": ""} and changed == {"zone_1_alarm"}
    cv.forget(PANEL)  # its device went offline
    assert cv.bad(PANEL) == {} and cv.get(PANEL) == {}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def zone_rule() -> RuleDef:
    [rule] = [r for r in load_rules() if r.id == "fire_zone_fault"]
    return rule


@pytest.fixture
def engine() -> Engine:
    return Engine(load_rules(), DEVICES)


def panel(values: Mapping[str, Value], bad: dict[str, str] | None = None) -> TelemetryInput:
    return TelemetryInput(PANEL, values, bad=bad or {})


def run(engine: Engine, steps: list[tuple[float, object]]
        ) -> tuple[EngineState, list[Action]]:
    """Feed inputs (None: a tick) at the given seconds; the zone rule's actions."""
    state, out = EngineState(), []
    for t, inp in steps:
        if inp is None:
            state, acts = engine.tick(state, at(t))
        else:
            assert isinstance(inp, TelemetryInput | DeviceStatusInput | GatewayStatusInput)
            state, acts = engine.evaluate(state, inp, at(t))
        out += [a for a in acts if getattr(a, "rule_id", "") == "fire_zone_fault"]
    return state, out


GOOD = {"zone_1_alarm": False, "zone_2_alarm": False, "zone_1_trouble": False}
ZONE_1_OPEN = {"zone_1_alarm": "fault,open-loop"}


def test_the_builtin_rule_is_a_high_priority_fire_system_fault_with_delays() -> None:
    rule = zone_rule()
    assert (rule.priority, rule.procedure) == ("high", "fire_system_fault")
    assert rule.on_delay_s > 0 and rule.off_delay_s > 0


def test_a_zone_reported_bad_raises_after_the_on_delay_naming_the_zone_and_flags(
        engine: Engine) -> None:
    on = zone_rule().on_delay_s
    bad_values = {k: v for k, v in GOOD.items() if k != "zone_1_alarm"}
    _, acts = run(engine, [(0, panel(GOOD)), (1, panel(bad_values, ZONE_1_OPEN)),
                           (1 + on - 0.5, None), (1 + on, None)])
    [alarm] = [a for a in acts if isinstance(a, RaiseAlarm)]
    assert alarm.at == at(1 + on)
    assert (alarm.alarm_type, alarm.priority, alarm.procedure) == (
        "fire_zone_fault", "high", "fire_system_fault")
    assert alarm.detail["points"] == ["zone_1_alarm"]
    assert alarm.detail["flags"] == {"zone_1_alarm": "fault,open-loop"}
    assert alarm.message.endswith("(zone_1_alarm: fault,open-loop)")
    assert alarm.detail["message_en"].startswith("Fire system trouble")
    assert alarm.detail["message_en"].endswith("(zone_1_alarm: fault,open-loop)")  # both tongues
    assert alarm.suppressed_by is None


def test_a_zone_never_reported_raises_nothing(engine: Engine) -> None:
    _, acts = run(engine, [(0, panel({"zone_1_alarm": False})), (600, None)])
    assert acts == []


def test_a_bad_zone_that_comes_back_within_the_on_delay_raises_nothing(engine: Engine) -> None:
    _, acts = run(engine, [(0, panel(GOOD)), (1, panel({}, ZONE_1_OPEN)), (3, panel(GOOD)),
                           (100, None)])
    assert not [a for a in acts if isinstance(a, RaiseAlarm)]


def test_clears_once_the_zones_are_good_for_the_off_delay(engine: Engine) -> None:
    on, off = zone_rule().on_delay_s, zone_rule().off_delay_s
    _, acts = run(engine, [(0, panel({}, ZONE_1_OPEN)), (on, None),
                           (on + 1, panel(GOOD)), (on + off, None), (on + 1 + off, None)])
    assert [type(a).__name__ for a in acts if not a.__class__.__name__ == "SaveRuleState"] == [
        "RaiseAlarm", "ClearAlarm"]
    [cleared] = [a for a in acts if isinstance(a, ClearAlarm)]
    assert cleared.at == at(on + 1 + off)


def test_a_second_zone_in_fault_updates_the_alarm(engine: Engine) -> None:
    on = zone_rule().on_delay_s
    both = {**ZONE_1_OPEN, "zone_2_alarm": "out-of-service"}
    _, acts = run(engine, [(0, panel({}, ZONE_1_OPEN)), (on, None), (on + 1, panel({}, both))])
    [update] = [a for a in acts if isinstance(a, UpdateAlarm)]
    assert update.detail["points"] == ["zone_1_alarm", "zone_2_alarm"]
    assert update.message.endswith("(zone_1_alarm: fault,open-loop, "
                                   "zone_2_alarm: out-of-service)")


def test_a_panel_gone_offline_neither_clears_nor_raises_it(engine: Engine) -> None:
    on = zone_rule().on_delay_s
    # raised, then the panel is offline: its points are forgotten (unknown), not good
    state, acts = run(engine, [(0, panel({}, ZONE_1_OPEN)), (on, None),
                               (on + 1, DeviceStatusInput(PANEL, online=False)),
                               (on + 2, panel({})), (on + 600, None)])
    assert [type(a) for a in acts if isinstance(a, RaiseAlarm | ClearAlarm)] == [RaiseAlarm]
    assert state.get((PANEL, "fire_zone_fault")).active


def test_under_its_gateway_offline_the_zone_alarm_is_suppressed(engine: Engine) -> None:
    on = zone_rule().on_delay_s
    _, acts = run(engine, [(0, GatewayStatusInput("gw-a", online=False)),
                           (1, panel({}, ZONE_1_OPEN)), (1 + on, None)])
    [alarm] = [a for a in acts if isinstance(a, RaiseAlarm)]
    assert alarm.suppressed_by == ("gw-a", "gateway_offline")


def test_a_good_value_in_alarm_is_no_fault(engine: Engine) -> None:
    _, acts = run(engine, [(0, panel({**GOOD, "zone_1_alarm": True})), (600, None)])
    assert acts == []


def test_malformed_flags_cost_the_rules_nothing_but_the_bad_entries() -> None:
    payload = (b'{"ts": "2026-01-01T08:00:00Z", "seq": 3, "session": "s", "points": {},'
               b' "quality": {"zone_1_alarm": "bad", "zone_2_alarm": "bad"},'
               b' "flags": {"zone_1_alarm": ["fault"], "zone_2_alarm": "out-of-service"}}')
    msg = telemetry(payload)
    assert msg.flags == {"zone_2_alarm": "out-of-service"}
    assert msg.flags_error is not None and "zone_1_alarm is a JSON array" in msg.flags_error
    cv = CurrentValues()
    cv.merge(PANEL, msg)
    assert cv.bad(PANEL) == {"zone_1_alarm": "", "zone_2_alarm": "out-of-service"}
    assert telemetry(payload.replace(b'{"zone_1_alarm": ["fault"], "zone_2_alarm": '
                                     b'"out-of-service"}', b'"fault"')).flags_error == (
        "flags is a JSON string, not an object")
