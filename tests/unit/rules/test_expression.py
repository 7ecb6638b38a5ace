"""The condition language: safe, three-valued, only points and a few functions."""

from __future__ import annotations

import pytest

from rules.expression import Condition, ConditionError, Context

ENTRAPMENT = "(not moving and not door_zone and door_closed and passengers > 0) or alarm_button"
TAGS = {"zone_1_alarm": ("fire", "fire_alarm"), "zone_3_alarm": ("fire", "fire_alarm"),
        "zone_3_trouble": ("fire", "fire_trouble")}


def ev(text: str, values: dict, tags: dict | None = None) -> bool | None:
    return Condition.compile(text).evaluate(Context(values, tags or {}))


STOPPED = {"moving": False, "door_zone": False, "door_closed": True, "passengers": 2,
           "alarm_button": False}


def test_entrapment_condition_true_false() -> None:
    assert ev(ENTRAPMENT, STOPPED) is True
    assert ev(ENTRAPMENT, {**STOPPED, "door_zone": True}) is False
    assert ev(ENTRAPMENT, {**STOPPED, "passengers": 0}) is False
    assert ev(ENTRAPMENT, {**STOPPED, "passengers": 0, "alarm_button": True}) is True


def test_missing_point_makes_condition_unknown() -> None:
    values = {k: v for k, v in STOPPED.items() if k != "door_zone"}
    assert ev(ENTRAPMENT, values) is None


def test_kleene_logic_decides_when_the_missing_point_cannot_matter() -> None:
    # the alarm button alone decides, whatever the unknown motion points say
    assert ev(ENTRAPMENT, {"alarm_button": True}) is True
    # one false conjunct decides the 'and'; the button is false: known false
    assert ev(ENTRAPMENT, {"moving": True, "alarm_button": False}) is False
    assert ev(ENTRAPMENT, {"moving": True}) is None
    assert ev("not x", {}) is None
    assert ev("x > 1 if y else 0", {"x": 2}) is None
    assert ev("1 < x < 3", {"x": 2}) is True


def test_tag_functions() -> None:
    assert ev('any_tag("fire_alarm")', {"zone_1_alarm": False, "zone_3_alarm": True}, TAGS)
    assert ev('any_tag("fire_alarm")', {"zone_1_alarm": False, "zone_3_alarm": False},
              TAGS) is False
    # one zone unreadable, the other quiet: unknown; the other in alarm: true
    assert ev('any_tag("fire_alarm")', {"zone_1_alarm": False}, TAGS) is None
    assert ev('any_tag("fire_alarm")', {"zone_3_alarm": True}, TAGS) is True
    assert ev('count_tag("fire_alarm") == 2', {"zone_1_alarm": 1, "zone_3_alarm": True}, TAGS)
    assert ev('all_tag("fire_alarm")', {"zone_1_alarm": True, "zone_3_alarm": False},
              TAGS) is False


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",
    "open('/etc/passwd')",
    "x.__class__",
    "[x for x in y]",
    "x[0]",
    "lambda: 1",
    "any_tag(tag)",
    "x +",
])
def test_forbidden_or_broken_expressions_are_refused(text: str) -> None:
    with pytest.raises(ConditionError):
        Condition.compile(text)


def test_compile_lists_names_and_tags() -> None:
    c = Condition.compile(ENTRAPMENT)
    assert c.names == {"moving", "door_zone", "door_closed", "passengers", "alarm_button"}
    assert Condition.compile('any_tag("fire_alarm") or x').tags == {"fire_alarm"}


def test_type_clash_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConditionError):
        ev("x > 1", {"x": "high"})
