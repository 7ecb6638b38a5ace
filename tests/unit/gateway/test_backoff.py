"""The gateway's reconnect and silent-unit backoff: doubling from the first wait, capped,
jittered within its bounds, free failures cost nothing, a success forgets."""

from __future__ import annotations

from gateway.backoff import Backoff


def test_waits_double_up_to_the_cap_within_the_jitter() -> None:
    b = Backoff(first_s=0.5, max_s=4.0, jitter=0.5)
    for step in (0.5, 1.0, 2.0, 4.0, 4.0):
        b.failed(now=100.0)
        assert step * 0.5 <= b.wait_s(100.0) <= step
    assert b.failures == 5
    assert b.wait_s(105.0) == 0.0  # past the last wait: try now


def test_free_failures_cost_no_wait_and_a_success_forgets() -> None:
    b = Backoff(first_s=1.0, max_s=30.0, jitter=0.75, free=1)
    b.failed(now=0.0)
    assert b.wait_s(0.0) == 0.0  # the first silence is free
    b.failed(now=0.0)
    assert 0.75 <= b.wait_s(0.0) <= 1.0
    b.succeeded()
    assert (b.failures, b.wait_s(0.0)) == (0, 0.0)
    b.failed(now=0.0)
    assert b.wait_s(0.0) == 0.0  # free again after a success
