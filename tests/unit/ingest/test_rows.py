from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from facility.messages import MAX_PAYLOAD_BYTES
from ingest.rows import (
    BAD,
    GOOD,
    Catalog,
    DeadLetterKind,
    Decoded,
    DeviceStatusRow,
    GatewayStatusRow,
    decode,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TS = "2025-03-01T11:59:59.500Z"
TS_DT = datetime(2025, 3, 1, 11, 59, 59, 500000, tzinfo=UTC)
CATALOG = Catalog(
    site_id="s1",
    gateways=frozenset({"gw-a", "gw-b"}),
    device_ids={"a-elevator-1": 3, "b-pumps": 4},
    device_gateway={"a-elevator-1": "gw-a", "b-pumps": "gw-b"},
    point_ids={("a-elevator-1", "moving"): 10, ("a-elevator-1", "car_floor"): 11,
               ("a-elevator-1", "load_kg"): 12, ("a-elevator-1", "mode"): 13,
               ("b-pumps", "outlet_pressure"): 20},
)
TELEMETRY = "facility/v1/s1/gw-a/a-elevator-1/telemetry"


def telemetry(points: dict[str, object], **extra: object) -> bytes:
    body = {"ts": TS, "seq": 1, "session": "s-1", "points": points} | extra
    return json.dumps(body).encode()


def refused(topic: str, payload: bytes, kind: DeadLetterKind) -> str:
    out = decode(topic, payload, CATALOG, NOW)
    assert out.dead_letter is not None, out
    assert out.dead_letter.kind is kind
    assert out.telemetry == ()
    assert out.dead_letter.payload == payload
    return out.dead_letter.reason


def test_values_become_typed_rows_with_quality() -> None:
    out = decode(TELEMETRY, telemetry(
        {"moving": True, "car_floor": 7, "load_kg": 312.5, "mode": "inspection"},
        quality={"load_kg": "stale"}), CATALOG, NOW)
    assert out.dead_letter is None
    rows = {r.point_id: r for r in out.telemetry}
    assert (rows[10].value, rows[10].value_text, rows[10].quality) == (1.0, None, GOOD)
    assert (rows[11].value, rows[11].quality) == (7.0, GOOD)
    assert (rows[12].value, rows[12].quality) == (312.5, 2)
    assert (rows[13].value, rows[13].value_text) == (None, "inspection")
    assert all(r.time == TS_DT for r in out.telemetry)
    assert out.rows == 4


def test_false_is_stored_as_zero() -> None:
    out = decode(TELEMETRY, telemetry({"moving": False}), CATALOG, NOW)
    assert [(r.point_id, r.value) for r in out.telemetry] == [(10, 0.0)]


def test_bad_point_is_a_row_without_value_and_bad_quality() -> None:
    out = decode(TELEMETRY, telemetry({"moving": True},
                                      quality={"car_floor": "bad", "load_kg": "good"}),
                 CATALOG, NOW)
    rows = {r.point_id: r for r in out.telemetry}
    assert set(rows) == {10, 11}  # a "good" entry without a value has nothing to store
    assert (rows[11].value, rows[11].value_text, rows[11].quality) == (None, None, BAD)


def test_unknown_point_is_dead_lettered_and_known_points_kept() -> None:
    payload = telemetry({"moving": True, "warp_drive": 9}, quality={"ghost": "bad"})
    out = decode(TELEMETRY, payload, CATALOG, NOW)
    assert [r.point_id for r in out.telemetry] == [10]
    assert out.dead_letter is not None
    assert out.dead_letter.kind is DeadLetterKind.UNKNOWN_POINT
    assert "ghost, warp_drive" in out.dead_letter.reason
    assert out.rows == 2


def test_unknown_device_is_refused() -> None:
    reason = refused("facility/v1/s1/gw-a/a-elevator-9/telemetry", telemetry({"moving": True}),
                     DeadLetterKind.UNKNOWN_DEVICE)
    assert "a-elevator-9" in reason


def test_device_on_the_wrong_gateway_is_refused() -> None:
    reason = refused("facility/v1/s1/gw-b/a-elevator-1/telemetry", telemetry({"moving": True}),
                     DeadLetterKind.UNKNOWN_DEVICE)
    assert "gw-a" in reason and "gw-b" in reason


def test_unknown_gateway_is_refused() -> None:
    reason = refused("facility/v1/s1/gw-x/status",
                     json.dumps({"ts": TS, "state": "online", "session": "x"}).encode(),
                     DeadLetterKind.UNKNOWN_GATEWAY)
    assert "gw-x" in reason


@pytest.mark.parametrize(("topic", "needle"), [
    ("facility/v2/s1/gw-a/a-elevator-1/telemetry", "not under facility/v1"),
    ("facility/v1/s1/gw-a/a-elevator-1/values", "unknown message kind"),
    ("facility/v1/s1/gw-a/A-Elevator/telemetry", "[a-z0-9_-]+"),
    ("facility/v1/other/gw-a/a-elevator-1/telemetry", "not this ingest's site"),
    ("facility/v1/s1/alarms", "alarm events"),
])
def test_topic_outside_the_contract_is_refused(topic: str, needle: str) -> None:
    reason = refused(topic, telemetry({"moving": True}), DeadLetterKind.TOPIC)
    assert needle in reason


@pytest.mark.parametrize(("payload", "needle"), [
    (b"{not json", "not JSON"),
    (b"", "not JSON"),
    (b"[1, 2]", "JSON list"),
    (telemetry({"moving": True}, seq="abc"), "seq"),
    (telemetry({"moving": [1, 2]}), "points.moving"),
    (json.dumps({"seq": 1, "session": "s", "points": {}}).encode(), "ts"),
    (telemetry({"moving": True}, ts="2025-03-01T11:59:59"), "ts"),  # no time zone
    (b'{"ts": "2025-03-01T11:59:59Z", "seq": 1, "session": "s", "points": {"load_kg": NaN}}',
     "load_kg"),
    (b'{"ts": "2025-03-01T11:59:59Z", "seq": 1, "session": "s", "points": {"load_kg": 1e999}}',
     "load_kg"),
])
def test_malformed_payload_is_refused_with_the_problem(payload: bytes, needle: str) -> None:
    reason = refused(TELEMETRY, payload, DeadLetterKind.PAYLOAD)
    assert needle in reason


def test_timestamp_more_than_a_day_ahead_is_refused() -> None:
    ahead = (NOW + timedelta(days=1, minutes=1)).isoformat()
    reason = refused(TELEMETRY, telemetry({"moving": True}, ts=ahead),
                     DeadLetterKind.FUTURE_TIMESTAMP)
    assert "ahead" in reason
    within = (NOW + timedelta(hours=23)).isoformat()
    out = decode(TELEMETRY, telemetry({"moving": True}, ts=within), CATALOG, NOW)
    assert out.dead_letter is None


def test_old_timestamps_are_stored() -> None:
    old = (NOW - timedelta(days=30)).isoformat()
    out = decode(TELEMETRY, telemetry({"moving": True}, ts=old, historical=True), CATALOG, NOW)
    assert out.dead_letter is None and len(out.telemetry) == 1


def test_oversized_payload_is_refused() -> None:
    payload = telemetry({"mode": "x"}, pad="y" * MAX_PAYLOAD_BYTES)
    reason = refused(TELEMETRY, payload, DeadLetterKind.OVERSIZE)
    assert str(len(payload)) in reason


def test_integer_too_large_for_a_double_is_refused() -> None:
    reason = refused(TELEMETRY, telemetry({"car_floor": 10**400}), DeadLetterKind.VALUE)
    assert "car_floor" in reason


def test_string_with_nul_is_refused_and_reason_is_storable() -> None:
    reason = refused(TELEMETRY, telemetry({"mode": "a\x00b"}), DeadLetterKind.VALUE)
    assert "mode" in reason and "\x00" not in reason


def test_device_status_becomes_a_row() -> None:
    out = decode("facility/v1/s1/gw-b/b-pumps/status",
                 json.dumps({"ts": TS, "state": "offline", "reason": "timeout"}).encode(),
                 CATALOG, NOW)
    assert out.device_status == DeviceStatusRow(4, "offline", "timeout", TS_DT, "b-pumps")
    assert out.rows == 1


def test_device_status_with_unknown_state_is_refused() -> None:
    reason = refused("facility/v1/s1/gw-b/b-pumps/status",
                     json.dumps({"ts": TS, "state": "sleepy"}).encode(), DeadLetterKind.PAYLOAD)
    assert "state" in reason


def test_gateway_status_becomes_a_row() -> None:
    out = decode("facility/v1/s1/gw-a/status",
                 json.dumps({"ts": TS, "state": "online", "session": "abc"}).encode(),
                 CATALOG, NOW)
    assert out.gateway_status == GatewayStatusRow("s1", "gw-a", "online", "abc", TS_DT)


def test_birth_is_noted_only() -> None:
    birth = {"ts": TS, "session": "s-1", "device_type": "elevator", "profile": "elevator",
             "profile_version": 2, "building": "a", "points": {"moving": {"type": "bool"}}}
    out = decode("facility/v1/s1/gw-a/a-elevator-1/birth", json.dumps(birth).encode(),
                 CATALOG, NOW)
    assert out.birth is not None and out.birth.profile_version == 2
    assert out.rows == 0 and out.telemetry == ()


def test_cleared_retained_message_is_ignored() -> None:
    assert decode("facility/v1/s1/gw-a/status", b"", CATALOG, NOW) == Decoded()
    assert decode("facility/v1/s1/gw-a/a-elevator-1/birth", b"", CATALOG, NOW) == Decoded()
