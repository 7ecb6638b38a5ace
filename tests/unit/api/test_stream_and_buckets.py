"""Pure parts of the live stream (SSE framing, where to resume) and of charting (the bucket
size the API's settings give for a span), and the report's month bounds and CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.reports import month_bounds, to_csv
from api.routes.telemetry import BUCKETS_S, MAX_POINTS, RAW_SPAN
from api.sse import format_event, parse_cursor
from facility.db.telemetry_query import align, choose_bucket


def test_format_event_is_one_sse_message_with_the_outbox_id() -> None:
    text = format_event(42, "alarm.raised", {"device": "a-elevator-1", "detail": {"m": "困人\n2"}})
    assert text.endswith("\n\n") and text.count("\n\n") == 1
    lines = text.rstrip("\n").split("\n")
    assert lines[:2] == ["id: 42", "event: alarm.raised"]
    assert len(lines) == 3 and lines[2].startswith("data: ")
    data = json.loads(lines[2].removeprefix("data: "))
    assert data == {"id": 42, "kind": "alarm.raised", "device": "a-elevator-1",
                    "detail": {"m": "困人\n2"}}


@pytest.mark.parametrize(
    ("header", "after", "expected"),
    [("17", None, 17), (" 17 ", 3, 17), (None, 3, 3), (None, None, None), ("abc", 5, 5),
     ("-1", None, None), ("", 9, 9)],
)
def test_parse_cursor(header: str | None, after: int | None, expected: int | None) -> None:
    assert parse_cursor(header, after) == expected


@pytest.mark.parametrize(
    ("span", "bucket"),
    [(timedelta(minutes=5), 0), (timedelta(minutes=10), 0), (timedelta(minutes=11), 5),
     (timedelta(hours=1), 30), (timedelta(days=1), 300), (timedelta(days=31), 10800),
     (timedelta(days=300), 86400), (timedelta(days=400), 7 * 86400)],
)
def test_the_api_chooses_raw_rows_then_at_most_max_points_buckets(
    span: timedelta, bucket: int
) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    size = choose_bucket(start, start + span, MAX_POINTS, RAW_SPAN).total_seconds()
    assert size == bucket and size in BUCKETS_S
    if size:
        assert span.total_seconds() / size <= MAX_POINTS


def test_buckets_align_to_utc_midnight_and_weeks_to_monday() -> None:
    t = datetime(2026, 3, 12, 13, 47, 5, tzinfo=UTC)  # a Thursday
    assert align(t, timedelta(minutes=5)) == datetime(2026, 3, 12, 13, 45, tzinfo=UTC)
    assert align(t, timedelta(hours=3)) == datetime(2026, 3, 12, 12, tzinfo=UTC)
    assert align(t, timedelta(days=7)) == datetime(2026, 3, 9, tzinfo=UTC)  # Monday


def test_month_bounds_in_a_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    m = month_bounds("2025-12", shanghai)
    assert m.start == datetime(2025, 12, 1, tzinfo=shanghai)
    assert m.end == datetime(2026, 1, 1, tzinfo=shanghai)
    assert m.start.astimezone(UTC) == datetime(2025, 11, 30, 16, tzinfo=UTC)
    feb = month_bounds("2024-02", ZoneInfo("UTC"))
    assert (feb.end - feb.start).days == 29


def test_csv_has_one_row_per_figure() -> None:
    report = {
        "site": "s", "month": "2025-03",
        "work_orders": {"count": 3, "mttr_s": 120.0, "sla_resolve": None},
        "alarms": {"alarms": 5, "mtta_s": 30.5}, "pm": {"due": 0, "compliance": None},
        "by_trade": [{"trade": "elevator", "count": 2}], "by_cause": [], "by_origin": [],
        "alarm_load": {"annunciated": 5, "chattering": [],
                       "top_bad_actors": [{"source": "a-elevator-1", "alarm_type": "entrapment",
                                           "count": 4}]},
    }
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0] == ["site", "month", "section", "key", "metric", "value"]
    body = {(r[2], r[3], r[4]): r[5] for r in rows[1:]}
    assert body[("work_orders", "all", "count")] == "3"
    assert body[("work_orders", "all", "sla_resolve")] == ""
    assert body[("by_trade", "elevator", "count")] == "2"
    assert body[("alarm_load.top_bad_actors", "a-elevator-1/entrapment", "count")] == "4"
    assert ("alarm_load", "all", "chattering") not in body
