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


@pytest.mark.parametrize("text", [
    "'x' * 1000000000000 == 'x'",           # a terabyte string
    "x * 1000000000000 == ''",              # the same from a text point
    "('x' * 100000) * 100000 == 'x'",
    "'x' * 100000 + 'y' * 100000 == 'x'",   # each half allowed, the sum is not
    "count_tag('fire') * ('x' * 100000) == ''",  # a function's result does not bypass it
    "'%999999999d' % 1 == ''",              # printf formatting with a huge width
])
def test_growth_beyond_simpleeval_limits_is_an_error(text: str) -> None:
    """The operators that can grow a value apply simpleeval's MAX_STRING_LENGTH; the error is a
    ConditionError at evaluation (the engine logs it and treats the rule as failed)."""
    with pytest.raises(ConditionError, match="cannot evaluate"):
        ev(text, {"x": "ab", "z": True, "w": True}, {"z": ("fire",), "w": ("fire",)})


def test_growth_within_the_limits_still_works() -> None:
    assert ev("'ab' * 3 == 'ababab'", {}) is True
    assert ev("x * 2 + 'c' == 'ababc'", {"x": "ab"}) is True
    assert ev("count_tag('fire') * 2 == 2", {"z": True}, {"z": ("fire",)}) is True
    assert ev("7 % 4 == 3", {}) is True


@pytest.mark.parametrize("text", [
    "10 ** 12 > 0",                         # no powers at all
    "1 << 100000 > 0",                      # nor shifts
    "x > " + "1 + " * 1000 + "1",           # too long
    "not " * 150 + "x",                     # too deep
    "-" * 150 + "x > 0",
    "(" * 250 + "x" + ")" * 250,           # the parser's own nesting limit
])
def test_powers_shifts_and_huge_or_deep_texts_are_refused_at_compile(text: str) -> None:
    with pytest.raises(ConditionError):
        Condition.compile(text)


def test_an_ordinary_long_condition_is_within_the_limits() -> None:
    text = " or ".join(f"zone_{i}_alarm" for i in range(60))
    assert ev(text, {"zone_59_alarm": True}) is True
