"""Intermittent signals (ISA-18.2 chattering) and the alarm button, through the pure engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.definitions import load_rules
from rules.engine import Engine
from rules.engine_types import (
    ClearAlarm,
    DeviceInfo,
    EngineState,
    RaiseAlarm,
    RuleState,
    TelemetryInput,
    UpdateAlarm,
)

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
ELEVATOR_TAGS = {p: ("elevator",) for p in
                 ("moving", "door_zone", "door_closed", "passengers", "alarm_button")}
PANEL_TAGS = {"zone_1_trouble": ("fire", "fire_trouble"),
              "zone_2_trouble": ("fire", "fire_trouble")}
DEVICES = {
    "a-elevator-1": DeviceInfo("a-elevator-1", "elevator", "gw-a", ELEVATOR_TAGS),
    "a-firepanel": DeviceInfo("a-firepanel", "fire_panel", "gw-a", PANEL_TAGS),
}
IDLE = {"moving": False, "door_zone": True, "door_closed": True, "passengers": 0,
        "alarm_button": False}
TROUBLE = {"zone_1_trouble": True, "zone_2_trouble": False}
QUIET = {"zone_1_trouble": False, "zone_2_trouble": False}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def engine() -> Engine:
    return Engine(load_rules(), DEVICES)


def run(engine: Engine, steps: list[tuple[float, dict | None]], device: str = "a-firepanel",
        state: EngineState | None = None) -> tuple[EngineState, list]:
    state, out = state or EngineState(), []
    for t, values in steps:
        if values is None:
            state, acts = engine.tick(state, at(t))
        else:
            state, acts = engine.evaluate(state, TelemetryInput(device, values), at(t))
        out += acts
    return state, out


def of(actions: list, kind: type, rule: str = "fire_trouble") -> list:
    return [a for a in actions if isinstance(a, kind) and a.rule_id == rule]


def chatter(start: float, times: int, period_s: float = 10, up_s: float = 2) -> list:
    """A trouble that is true for up_s every period_s (shorter than its 5 s on-delay)."""
    steps: list[tuple[float, dict | None]] = []
    for i in range(times):
        t = start + i * period_s
        steps += [(t, TROUBLE), (t + 1, None), (t + up_s, QUIET), (t + up_s + 1, None)]
    return steps


def test_a_signal_shorter_than_its_on_delay_raises_nothing_once(engine: Engine) -> None:
    _, actions = run(engine, chatter(0, 2))
    assert of(actions, RaiseAlarm) == []


def test_the_third_occurrence_within_the_window_raises_one_chattering_alarm(
    engine: Engine,
) -> None:
    state, actions = run(engine, chatter(0, 3))
    [alarm] = of(actions, RaiseAlarm)
    assert alarm.at == at(20)  # at the third rise, not after an on-delay that never passed
    assert alarm.detail["chattering"] is True and alarm.detail["occurrences"] == 3
    assert "间歇" in alarm.message and alarm.procedure == "fire_system_fault"
    assert "[intermittent: " in alarm.detail["message_en"]
    assert of(actions, ClearAlarm) == []  # held while it keeps chattering
    st = state.get(("a-firepanel", "fire_trouble"))
    assert st.active and st.chattering
    # the saved state survives a restart
    assert RuleState.from_json(st.to_json()) == st


def test_repeats_update_the_alarm_never_raise_again(engine: Engine) -> None:
    _state, actions = run(engine, chatter(0, 8))
    assert len(of(actions, RaiseAlarm)) == 1
    updates = of(actions, UpdateAlarm)
    assert [u.detail["occurrences"] for u in updates] == [4, 5, 6, 7, 8]
    assert updates[-1].detail["last_at"] == at(70).isoformat()
    assert of(actions, ClearAlarm) == []


def test_a_chattering_alarm_clears_once_quiet_for_its_window(engine: Engine) -> None:
    state, _actions = run(engine, chatter(0, 3))
    # quiet since t=22: the 5 s off-delay passes, the 60 s window has not
    state, acts = run(engine, [(30, None), (60, None)], state=state)
    assert of(acts, ClearAlarm) == []
    state, acts = run(engine, [(82.5, None)], state=state)
    [clear] = of(acts, ClearAlarm)
    assert clear.at == at(82.5)
    st = state.get(("a-firepanel", "fire_trouble"))
    assert not st.active and not st.chattering and st.rises == ()


def test_occurrences_spread_wider_than_the_window_never_chatter(engine: Engine) -> None:
    _, actions = run(engine, chatter(0, 6, period_s=40))  # two per 60 s at most
    assert of(actions, RaiseAlarm) == []


def test_an_alarm_up_by_its_on_delay_turns_chattering_when_it_bounces(engine: Engine) -> None:
    # supervisory: on-delay 0, off-delay 5; bouncing within the off-delay keeps it up
    rule = "fire_supervisory"
    sup_tags = {"zone_1_supervisory": ("fire", "fire_supervisory")}
    eng = Engine(load_rules(), {"p": DeviceInfo("p", "fire_panel", "gw-a", sup_tags)})
    on, off = {"zone_1_supervisory": True}, {"zone_1_supervisory": False}
    steps = [(0, on), (1, off), (2, on), (3, off), (4, on), (5, off), (6, on)]
    _state, actions = run(eng, steps, device="p")
    assert len(of(actions, RaiseAlarm, rule)) == 1
    [upd, *more] = of(actions, UpdateAlarm, rule)
    assert upd.detail["chattering"] is True and upd.detail["occurrences"] == 3
    assert [u.detail["occurrences"] for u in more] == [4]


def test_the_alarm_button_raises_the_entrapment_at_once(engine: Engine) -> None:
    press = {**IDLE, "door_zone": False, "alarm_button": True}
    _, actions = run(engine, [(0, IDLE), (3, press)], device="a-elevator-1")
    [alarm] = of(actions, RaiseAlarm, "entrapment")
    assert alarm.at == at(3)
    assert alarm.priority == "critical"


def test_the_button_pressed_during_the_on_delay_raises_then(engine: Engine) -> None:
    trapped = {**IDLE, "door_zone": False, "passengers": 2}
    steps = [(0, trapped), (4, {**trapped, "alarm_button": True})]
    _, actions = run(engine, steps, device="a-elevator-1")
    [alarm] = of(actions, RaiseAlarm, "entrapment")
    assert alarm.at == at(4)


def test_without_the_button_the_entrapment_waits_its_on_delay(engine: Engine) -> None:
    trapped = {**IDLE, "door_zone": False, "passengers": 2}
    _, actions = run(engine, [(0, trapped), (9, trapped), (9.9, None)], device="a-elevator-1")
    assert of(actions, RaiseAlarm, "entrapment") == []
