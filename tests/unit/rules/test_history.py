"""Replayed telemetry evaluated for the record (rules.history): at the messages' own times,
delays run out between messages, and out-of-order messages are skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from facility.messages import Telemetry
from rules.definitions import load_rules
from rules.engine import Engine
from rules.engine_types import DeviceInfo
from rules.history import History

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
TAGS = {p: ("elevator",) for p in
        ("moving", "door_zone", "door_closed", "passengers", "alarm_button")}
TRAPPED = {"moving": False, "door_zone": False, "door_closed": True, "passengers": 2,
           "alarm_button": False}
FREE = {**TRAPPED, "door_zone": True, "passengers": 0}


def history() -> History:
    return History(Engine(load_rules(), {"lift": DeviceInfo("lift", "elevator", "gw", TAGS)}))


def msg(seconds: float, seq: int, points: dict) -> Telemetry:
    return Telemetry(ts=T0 + timedelta(seconds=seconds), seq=seq, session="s", points=points,
                     historical=True)


def test_a_fault_silent_for_its_on_delay_is_found_at_the_times_it_began_and_ended() -> None:
    h = history()
    assert h.feed("lift", msg(0, 1, TRAPPED)) == []
    # nothing is reported while the car is stuck; the next message says it is free
    assert h.feed("lift", msg(15, 2, FREE)) == []
    [found] = h.feed("lift", msg(30, 3, {**FREE, "car_floor": 2}))
    assert found.raised.rule_id == "entrapment"
    assert found.raised.at == T0 + timedelta(seconds=10)  # when the on-delay ran out
    assert found.cleared_at == T0 + timedelta(seconds=17)  # freed at 15, off-delay 2 s


def test_a_message_older_than_the_last_evaluated_is_skipped() -> None:
    h = history()
    h.feed("lift", msg(0, 1, FREE))
    h.feed("lift", msg(20, 5, FREE))
    # a bulk row replayed after the critical ones: older, it changes nothing
    assert h.feed("lift", msg(5, 2, TRAPPED)) == []
    assert h.feed("lift", msg(40, 6, FREE)) == []


def test_partial_replayed_messages_start_from_the_live_values() -> None:
    h = history()
    live = {**FREE, "car_floor": 3}  # what the live service knows of the lift
    stuck = {"door_zone": False, "passengers": 2}  # a partial report: what changed
    assert h.feed("lift", msg(0, 1, stuck), live) == []
    assert h.feed("lift", msg(15, 2, {"door_zone": True, "passengers": 0}), live) == []
    [found] = h.feed("lift", msg(30, 3, {"car_floor": 4}), live)
    assert found.raised.rule_id == "entrapment"
    assert found.raised.at == T0 + timedelta(seconds=10)
