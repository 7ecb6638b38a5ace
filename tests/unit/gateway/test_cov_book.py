"""The liveness and COV accounting of one BACnet device (gateway.cov_book), without I/O."""

from __future__ import annotations

import pytest

from gateway.cov_book import CovBook
from gateway.health import DeviceHealth

OBJECTS = ("bi-1", "bi-2", "msv-1")


def book(integrity_s: float = 60.0) -> CovBook[str]:
    return CovBook(integrity_s, retry_first_s=60.0, retry_max_s=300.0)


def following_all(b: CovBook[str]) -> CovBook[str]:
    for o in OBJECTS:
        assert b.subscribed(o) is None
        b.notified(o, value=f"v-{o}", status_flags=(0, 0, 0, 0))
    return b


def test_without_notified_values_every_due_object_is_read_by_request() -> None:
    b = book()
    for now in (0.0, 1.0, 2.0):
        plan = b.plan(OBJECTS, now)
        assert plan.ask == OBJECTS and plan.cached == () and not plan.probe
    b.subscribed("bi-1")  # subscribed, nothing notified yet: still read
    assert b.plan(OBJECTS, 3.0).ask == OBJECTS


def test_with_every_value_notified_each_poll_still_asks_the_device_something() -> None:
    b = following_all(book(integrity_s=60.0))
    first = b.plan(OBJECTS, 0.0)
    assert first.integrity and first.ask == OBJECTS and not first.probe  # integrity poll
    for now in (1.0, 2.0, 30.0, 59.0):
        plan = b.plan(OBJECTS, now)
        assert plan.ask == () and plan.cached == OBJECTS
        assert plan.probe  # the liveness request: a dead device fails this poll
    again = b.plan(OBJECTS, 60.0)
    assert again.integrity and again.ask == OBJECTS


@pytest.mark.parametrize("covered", [(), ("bi-1",), OBJECTS])
@pytest.mark.parametrize("due", [("bi-1",), ("bi-2", "msv-1"), OBJECTS])
def test_no_poll_plan_answers_from_notified_values_alone(
        covered: tuple[str, ...], due: tuple[str, ...]) -> None:
    b = book(integrity_s=5.0)
    for o in covered:
        b.subscribed(o)
        b.notified(o, value=1)
    for now in range(12):
        plan = b.plan(due, float(now))
        assert plan.ask or plan.probe
        assert set(plan.ask) | set(plan.cached) == set(due)


def test_a_device_that_stops_answering_goes_offline_after_as_many_polls_with_cov() -> None:
    """The reader fails a poll whose requests (the probe included) get no answer; the
    poller hands that to DeviceHealth: offline after offline_after polls, as when polled."""
    b = following_all(book())
    health = DeviceHealth(offline_after=3)
    b.plan(OBJECTS, 0.0)
    assert health.record_success(0.0) is not None
    changes = []
    for now in (1.0, 2.0, 3.0):
        plan = b.plan(OBJECTS, now)  # a probe first, then reads: asked, not answered
        assert plan.probe if now == 1.0 else plan.ask == OBJECTS
        changes.append(health.record_failure("timeout", now))
        b.lost()
    assert changes[:2] == [None, None]
    assert changes[2] is not None and changes[2].state == "offline"


def test_lost_forgets_notified_values_until_the_device_notifies_again() -> None:
    b = following_all(book())
    b.plan(OBJECTS, 0.0)
    assert b.lost() == 3
    assert b.covered == frozenset()
    assert b.plan(OBJECTS, 1.0).ask == OBJECTS  # read by request after it answers again
    b.read("bi-1", "read", (0, 0, 0, 0), None)  # a read is not a notification
    assert b.covered == frozenset()
    b.notified("bi-1", value="new")
    assert b.covered == {"bi-1"} and b.sample("bi-1").value == "new"
    assert b.lost() == 1


def test_a_read_refreshes_a_notified_value_and_keeps_the_reliability_while_faulty() -> None:
    b = following_all(book())
    b.read("bi-1", "read", (0, 1, 0, 0), "open-loop")
    assert b.sample("bi-1").value == "read" and b.sample("bi-1").reliability == "open-loop"
    b.notified("bi-1", status_flags=(0, 1, 0, 0))  # still faulty: the reason still holds
    assert b.sample("bi-1").reliability == "open-loop"
    b.notified("bi-1", status_flags=(0, 0, 0, 0))  # fault cleared: no reliability to show
    assert b.sample("bi-1").reliability is None


def test_failed_subscriptions_are_logged_once_per_device_and_retried_with_backoff() -> None:
    b = following_all(book())
    b.plan(OBJECTS, 99.0)  # the first, integrity, poll
    wait, line = b.failed("bi-1", "refused", 100.0, label="zone_1 (bi-1)")
    assert line is not None and "zone_1 (bi-1)" in line and "refused" in line
    assert 30.0 <= wait <= 60.0  # the first step, with jitter
    assert "bi-1" not in b.covered and b.plan(OBJECTS, 101.0).ask == ("bi-1",)
    assert b.failed("bi-2", "refused", 101.0)[1] is None  # the device is already degraded
    waits = [b.failed("bi-1", "renewal failed", 200.0 + i)[0] for i in range(6)]
    assert all(w <= 300.0 for w in waits) and max(waits) > 60.0  # doubling, capped
    assert b.failing == {"bi-1", "bi-2"}
    assert b.subscribed("bi-1") is None  # bi-2 still fails
    restored = b.subscribed("bi-2")
    assert restored is not None and "accepted again" in restored
    assert b.failed("msv-1", "refused", 300.0)[1] is not None  # a new episode: said again


def test_integrity_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CovBook(0.0, retry_first_s=1.0, retry_max_s=1.0)
