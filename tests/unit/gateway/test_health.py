from __future__ import annotations

import pytest

from gateway.health import DeviceHealth


def test_offline_after_n_consecutive_failures_and_said_once() -> None:
    h = DeviceHealth(offline_after=3)
    assert h.record_success(0.0) is not None  # unknown -> online
    assert h.record_failure("timeout", 1.0) is None
    assert h.record_failure("timeout", 2.0) is None
    t = h.record_failure("timeout", 3.0)
    assert t is not None and t.state == "offline" and t.reason == "timeout after 3 tries"
    assert h.record_failure("timeout", 4.0) is None
    assert h.state == "offline"


def test_a_good_poll_resets_the_count() -> None:
    h = DeviceHealth(offline_after=2)
    h.record_success(0.0)
    assert h.record_failure("transport", 1.0) is None
    assert h.record_success(2.0) is None  # still online: no transition
    assert h.record_failure("transport", 3.0) is None
    t = h.record_failure("transport", 4.0)
    assert t is not None and t.reason == "transport after 2 tries"


def test_first_good_poll_after_offline_recovers_with_duration() -> None:
    h = DeviceHealth(offline_after=1)
    first = h.record_failure("timeout", 10.0)
    assert first is not None and first.state == "offline" and first.since_s is None
    t = h.record_success(52.0)
    assert t is not None and t.state == "online" and t.reason == "recovered after 42 s"
    assert t.since_s == 42.0


def test_first_ever_good_poll_says_online() -> None:
    t = DeviceHealth(offline_after=3).record_success(0.0)
    assert t is not None and t.state == "online" and t.since_s is None


def test_offline_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DeviceHealth(offline_after=0)
