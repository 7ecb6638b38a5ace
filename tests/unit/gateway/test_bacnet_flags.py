"""BACnet status flags and reliability into a point's quality (gateway.bacnet_flags)."""

from __future__ import annotations

import pytest

from gateway.bacnet_flags import NORMAL, condition


def test_no_flag_and_no_fault_detected_is_normal() -> None:
    assert condition((0, 0, 0, 0), "no-fault-detected") == NORMAL
    assert condition((0, 0, 0, 0), None) == NORMAL  # an object without reliability
    assert condition(None, None) == NORMAL  # nothing read of it: judged by its value


@pytest.mark.parametrize(("flags", "reliability", "words"), [
    ((0, 1, 0, 0), None, "fault"),
    ((0, 0, 0, 1), None, "out-of-service"),
    ((0, 1, 0, 0), "open-loop", "fault,open-loop"),
    ((0, 0, 0, 0), "shorted-loop", "fault,shorted-loop"),  # reliability alone says fault
    (None, "over-range", "fault,over-range"),
    ((1, 1, 0, 1), "no-sensor", "in-alarm,fault,out-of-service,no-sensor"),
])
def test_fault_out_of_service_and_unreliable_make_the_point_bad(
        flags: tuple[int, ...] | None, reliability: str | None, words: str) -> None:
    got = condition(flags, reliability)
    assert got.bad and got.flags == words


@pytest.mark.parametrize(("flags", "words"), [
    ((1, 0, 0, 0), "in-alarm"), ((0, 0, 1, 0), "overridden"),
    ((1, 0, 1, 0), "in-alarm,overridden")])
def test_in_alarm_and_overridden_are_named_but_the_value_stays_good(
        flags: tuple[int, ...], words: str) -> None:
    got = condition(flags, "no-fault-detected")
    assert not got.bad and got.flags == words
