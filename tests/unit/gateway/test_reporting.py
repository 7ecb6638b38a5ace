from __future__ import annotations

from gateway.reporting import Report, ReportState


def state(period: float = 30.0) -> ReportState:
    return ReportState({"pressure": 0.05, "level": 0.0}, period)


def test_first_poll_is_a_full_snapshot_with_bad_points_flagged() -> None:
    s = state()
    r = s.decide({"pressure": 0.4, "running": True}, frozenset({"level"}), now=0.0)
    assert r is not None and r.full
    assert r.points == {"pressure": 0.4, "running": True}
    assert r.quality == {"pressure": "good", "running": "good", "level": "bad"}


def test_nothing_sent_while_within_deadband() -> None:
    s = state()
    s.decide({"pressure": 0.40}, frozenset(), now=0.0)
    assert s.decide({"pressure": 0.44}, frozenset(), now=1.0) is None
    assert s.decide({"pressure": 0.36}, frozenset(), now=2.0) is None
    r = s.decide({"pressure": 0.46}, frozenset(), now=3.0)
    assert r is not None and not r.full and r.points == {"pressure": 0.46}


def test_deadband_is_from_the_last_value_sent_so_drift_is_not_lost() -> None:
    s = state()
    s.decide({"pressure": 0.40}, frozenset(), now=0.0)
    for i, v in enumerate([0.43, 0.44, 0.45]):  # each step < deadband from the previous
        assert s.decide({"pressure": v}, frozenset(), now=1.0 + i) is None
    r = s.decide({"pressure": 0.4501}, frozenset(), now=5.0)
    assert r is not None and r.points == {"pressure": 0.4501}


def test_zero_deadband_reports_any_change_and_only_the_changed_points() -> None:
    s = state()
    s.decide({"level": 1.0, "pressure": 0.4, "mode": "auto", "run": False}, frozenset(), now=0)
    r = s.decide({"level": 1.01, "pressure": 0.4, "mode": "auto", "run": True}, frozenset(), 1)
    assert r is not None and r.points == {"level": 1.01, "run": True}
    assert r.quality == {"level": "good", "run": "good"}
    r = s.decide({"level": 1.01, "pressure": 0.4, "mode": "hand", "run": True}, frozenset(), 2)
    assert r is not None and r.points == {"mode": "hand"}


def test_full_snapshot_every_report_period() -> None:
    s = state(period=10.0)
    s.decide({"pressure": 0.4}, frozenset(), now=0.0)
    assert s.decide({"pressure": 0.4}, frozenset(), now=9.9) is None
    r = s.decide({"pressure": 0.4}, frozenset(), now=10.0)
    assert r is not None and r.full and r.points == {"pressure": 0.4}
    assert s.decide({"pressure": 0.4}, frozenset(), now=15.0) is None


def test_point_turning_bad_then_good_is_reported_once_each_way() -> None:
    s = state()
    s.decide({"pressure": 0.4, "level": 2.0}, frozenset(), now=0.0)
    r = s.decide({"level": 2.0}, frozenset({"pressure"}), now=1.0)
    assert r is not None and r.points == {} and r.quality == {"pressure": "bad"}
    assert s.decide({"level": 2.0}, frozenset({"pressure"}), now=2.0) is None
    r = s.decide({"pressure": 0.4, "level": 2.0}, frozenset(), now=3.0)
    assert r is not None and r.points == {"pressure": 0.4} and r.quality == {"pressure": "good"}


def test_bool_is_not_compared_as_a_number() -> None:
    s = ReportState({"flag": 5.0}, 30.0)  # a deadband must not swallow a bool change
    s.decide({"flag": False}, frozenset(), now=0.0)
    r = s.decide({"flag": True}, frozenset(), now=1.0)
    assert r is not None and r.points == {"flag": True}


def test_percent_deadband_is_relative_to_the_last_value_sent() -> None:
    s = ReportState({}, 30.0, percent={"power": 5.0})
    s.decide({"power": 200.0}, frozenset(), now=0.0)
    assert s.decide({"power": 209.0}, frozenset(), now=1.0) is None  # 4.5 % of 200
    r = s.decide({"power": 211.0}, frozenset(), now=2.0)
    assert r is not None and r.points == {"power": 211.0}
    s.decide({"power": 0.0}, frozenset(), now=3.0)
    r = s.decide({"power": 0.1}, frozenset(), now=4.0)  # any move away from zero
    assert r is not None and r.points == {"power": 0.1}


def test_event_points_ignore_deadbands_and_make_the_report_urgent() -> None:
    s = ReportState({"mode": 5.0, "level": 5.0}, 30.0, events=["mode"])
    s.decide({"mode": 1, "level": 10.0}, frozenset(), now=0.0)
    r = s.decide({"mode": 2, "level": 11.0}, frozenset(), now=1.0)
    assert r is not None and r.points == {"mode": 2} and r.urgent
    assert s.decide({"mode": 2, "level": 20.0}, frozenset(), now=2.0) == Report(
        points={"level": 20.0}, quality={"level": "good"}, full=False, urgent=False)
    r = s.decide({"level": 20.0}, frozenset({"mode"}), now=3.0)  # an event point turns bad
    assert r is not None and r.quality == {"mode": "bad"} and r.urgent


def test_a_partial_poll_never_becomes_the_full_snapshot() -> None:
    s = ReportState({}, 10.0)
    s.decide({"a": 1, "b": 2}, frozenset(), now=0.0)
    assert s.decide({"a": 1}, frozenset(), now=11.0, complete=False) is None
    assert s.snapshot_due(11.0)
    r = s.decide({"a": 1, "b": 2}, frozenset(), now=11.5)
    assert r is not None and r.full and r.points == {"a": 1, "b": 2}
