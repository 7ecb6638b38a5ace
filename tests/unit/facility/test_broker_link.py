"""When an active instance gives up for want of a broker: after ``grace_s`` of no connection
without a break, counted from the term's start of connecting, never while nothing is
followed; a node failover shorter than the grace does not count; no I/O (the clock is
injected)."""

from __future__ import annotations

import asyncio

import pytest

from facility.broker_link import BrokerAbsence, BrokerLink
from facility.db.active_lock import LockTiming


def test_absent_only_after_the_grace_without_a_break() -> None:
    absence = BrokerAbsence(15.0)
    absence.started(100.0)
    assert not absence.observe(False, 0, 100.0)
    assert not absence.observe(False, 0, 114.9)
    assert absence.observe(False, 0, 115.0)


def test_a_connection_seen_up_starts_the_count_again() -> None:
    absence = BrokerAbsence(15.0)
    absence.started(0.0)
    assert not absence.observe(False, 0, 10.0)
    assert not absence.observe(True, 1, 11.0)  # a node failover: back on another node
    assert not absence.observe(False, 1, 12.0)  # lost again: counted from here
    assert not absence.observe(False, 1, 26.9)
    assert absence.observe(False, 1, 27.0)


def test_a_connection_made_and_lost_between_two_looks_starts_the_count_again() -> None:
    absence = BrokerAbsence(3.0)
    absence.started(0.0, connections=4)
    assert not absence.observe(False, 4, 2.0)
    # connected at 2.1, cut off at 2.4: never seen up, but it did connect
    assert not absence.observe(False, 5, 2.5)
    assert not absence.observe(False, 5, 5.4)
    assert absence.observe(False, 5, 5.5)


def test_a_session_up_from_the_start_is_never_absent() -> None:
    absence = BrokerAbsence(1.0)
    absence.started(0.0)
    assert not any(absence.observe(True, 1, t) for t in (0.5, 5.0, 500.0))


@pytest.mark.parametrize("grace", [0.0, -1.0, float("nan")])
def test_a_grace_that_is_not_positive_is_refused(grace: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        BrokerAbsence(grace)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Session:
    """What the link reads of a receiving session (its event is never awaited here)."""

    def __init__(self) -> None:
        self.subscribed = asyncio.Event()
        self.connections = 0

    def up(self) -> None:
        self.connections += 1
        self.subscribed.set()


def test_the_link_counts_from_follow_and_forgets_at_the_end_of_a_term() -> None:
    clock = Clock()
    link = BrokerLink("mqtt://127.0.0.1:1883,mqtt://127.0.0.2:1883", 15.0, clock)
    clock.now = 100.0
    assert not link.lost()  # nothing followed yet: a term still loading its state
    link.follow(Session())
    clock.now = 114.0
    assert not link.lost()
    clock.now = 115.0
    assert link.lost()  # never connected within the grace
    link.forget()
    assert not link.lost()
    clock.now = 200.0
    session = Session()
    link.follow(session)  # the next term: counted from its own start
    clock.now = 214.0
    assert not link.lost()
    session.up()
    clock.now = 500.0
    assert not link.lost()
    session.subscribed.clear()
    clock.now = 501.0
    assert not link.lost()  # seen down: counted from here
    clock.now = 515.9
    assert not link.lost()
    clock.now = 516.0
    assert link.lost()
    assert link.describe() == "mqtt://127.0.0.1:1883 and 1 more"


def test_the_lock_timing_refuses_a_grace_shorter_than_its_check() -> None:
    assert LockTiming().broker_grace_s == 15.0
    with pytest.raises(ValueError, match="broker grace"):
        LockTiming(check_s=1.0, broker_grace_s=0.5)
    with pytest.raises(ValueError, match="broker grace"):
        LockTiming(broker_grace_s=float("nan"))
