"""Preventive-maintenance due dates: pure functions of the schedule and now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from rules.dispatch.schedule import add_months, calendar_due, occurrence, run_hours_due

TZ = ZoneInfo("Asia/Shanghai")
START = date(2025, 1, 1)


def local(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=TZ).astimezone(UTC)


def test_month_end_is_clamped() -> None:
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2025, 11, 30), 3) == date(2026, 2, 28)


def test_half_monthly_occurrence_opens_with_lead_and_is_due_at_the_next_period() -> None:
    occ = occurrence(START, 15, "d", 2, timedelta(days=1), TZ)
    assert occ.key == "2025-01-31"
    assert occ.open_at == local(2025, 1, 30)
    assert occ.due_at == local(2025, 2, 15)


def test_the_current_occurrence_is_the_latest_opened() -> None:
    cur, missed = calendar_due(START, 3, "mo", timedelta(days=3), TZ, local(2025, 6, 28, 12),
                               None)
    assert cur is not None and cur.key == "2025-07-01"  # opened 3 days ahead
    assert missed == []
    cur, _ = calendar_due(START, 3, "mo", timedelta(days=3), TZ, local(2025, 6, 27, 12), None)
    assert cur is not None and cur.key == "2025-04-01"


def test_before_the_first_period_nothing_is_due() -> None:
    assert calendar_due(START, 1, "y", timedelta(0), TZ, local(2024, 12, 31, 23), None) == \
        (None, [])


def test_an_occurrence_already_recorded_is_not_opened_again() -> None:
    assert calendar_due(START, 1, "d", timedelta(0), TZ, local(2025, 3, 5, 9),
                        "2025-03-05") == (None, [])


def test_occurrences_skipped_while_stopped_are_missed() -> None:
    cur, missed = calendar_due(START, 1, "w", timedelta(0), TZ, local(2025, 1, 30, 9),
                               "2025-01-08")
    assert cur is not None and cur.key == "2025-01-29"
    assert [m.key for m in missed] == ["2025-01-15", "2025-01-22"]


def test_local_midnight_decides_the_day() -> None:
    # 2025-03-04 23:30 Shanghai is 15:30 UTC the same day; 00:30 on the 5th is 16:30 UTC
    cur, _ = calendar_due(START, 1, "d", timedelta(0), TZ, local(2025, 3, 4, 23), None)
    assert cur is not None and cur.key == "2025-03-04"
    cur, _ = calendar_due(START, 1, "d", timedelta(0), TZ,
                          local(2025, 3, 4, 23) + timedelta(hours=1, minutes=30), None)
    assert cur is not None and cur.key == "2025-03-05"


def test_run_hours_threshold_crossed() -> None:
    assert run_hours_due(500, None, 1234) is None  # the first reading is a baseline
    assert run_hours_due(500, 1234, 1400) is None
    assert run_hours_due(500, 1499, 1500) == 1500
    assert run_hours_due(500, 1400, 2100) == 2000  # two thresholds at once: one service
    assert run_hours_due(500, 2100, 30) is None  # counter reset (pump replaced)
