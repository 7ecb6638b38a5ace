"""What the rules service remembers between messages: current values and the order guard."""

from __future__ import annotations

from datetime import UTC, datetime

from facility.messages import Telemetry
from rules.current import SequenceGuard


def msg(seq: int, session: str = "s1") -> Telemetry:
    return Telemetry(ts=datetime(2026, 1, 1, tzinfo=UTC), seq=seq, session=session,
                     points={"x": 1})


def test_newer_messages_pass_and_older_or_repeated_ones_are_spotted() -> None:
    guard = SequenceGuard()
    assert guard.check("lift", msg(5)) is None
    assert guard.check("lift", msg(7)) is None  # gaps are fine (seq is per gateway)
    assert guard.check("lift", msg(7)) == 7  # a duplicate
    assert guard.check("lift", msg(6)) == 7  # out of order
    assert guard.check("lift", msg(8)) is None


def test_devices_are_independent_and_a_new_session_starts_afresh() -> None:
    guard = SequenceGuard()
    assert guard.check("lift", msg(100)) is None
    assert guard.check("pumps", msg(3)) is None  # another device: its own history
    assert guard.check("lift", msg(1, session="s2")) is None  # the gateway restarted
    assert guard.check("lift", msg(1, session="s2")) == 1
    assert guard.check("lift", msg(50, session="s1")) is None  # an old session reappearing
