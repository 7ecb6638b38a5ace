from __future__ import annotations

import json

import pytest

from facility import messages, topics
from facility.durations import parse_duration


def test_device_topics_round_trip() -> None:
    for kind in (topics.TopicKind.BIRTH, topics.TopicKind.TELEMETRY,
                 topics.TopicKind.DEVICE_STATUS):
        t = topics.device_topic(kind, "demo", "gw-a", "a-elevator-1")
        assert topics.parse(t) == topics.Topic(kind, "demo", "gw-a", "a-elevator-1")
    assert topics.parse(topics.gateway_status("demo", "gw-a")).kind is \
        topics.TopicKind.GATEWAY_STATUS
    assert topics.parse(topics.alarms("demo")) == topics.Topic(topics.TopicKind.ALARMS, "demo")


@pytest.mark.parametrize("bad", [
    "facility/v2/demo/gw/dev/telemetry",
    "facility/v1/demo/gw/dev/values",
    "facility/v1/Demo/gw/dev/telemetry",
    "facility/v1/demo/gw/dev/telemetry/extra",
    "other",
])
def test_topics_outside_the_contract_are_refused(bad: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.parse(bad)


def test_building_a_topic_with_a_bad_id_is_refused() -> None:
    with pytest.raises(topics.TopicError):
        topics.device_topic(topics.TopicKind.TELEMETRY, "demo", "gw a", "x")


def test_shared_subscription_filter() -> None:
    assert topics.subscription(topics.TopicKind.TELEMETRY, share_group="ingest") == \
        "$share/ingest/facility/v1/+/+/+/telemetry"
    assert topics.subscription(topics.TopicKind.GATEWAY_STATUS) == "facility/v1/+/+/status"


def _telemetry(**over: object) -> bytes:
    body = {"ts": "2026-11-27T10:00:00+08:00", "seq": 3, "session": "s1",
            "points": {"car_floor": 7, "moving": False}} | over
    return json.dumps(body).encode()


def test_telemetry_parses_and_normalises_time_to_utc() -> None:
    msg = messages.parse(messages.Telemetry, _telemetry())
    assert msg.ts.utcoffset().total_seconds() == 0
    assert msg.ts.hour == 2
    assert json.loads(messages.encode(msg))["ts"] == "2026-11-27T02:00:00.000Z"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not an object"),
    (_telemetry(ts="2026-11-27T10:00:00"), "ts"),
    (_telemetry(seq=-1), "seq"),
    (_telemetry(points={"x": [1]}), "points"),
    (b'{"ts": "2026-11-27T10:00:00Z", "seq": 1, "session": "s", "points": {"x": NaN}}',
     "not a finite number"),
    (b" " * (messages.MAX_PAYLOAD_BYTES + 1), "exceeds"),
])
def test_bad_telemetry_is_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(messages.MessageError) as err:
        messages.parse(messages.Telemetry, payload)
    assert reason in err.value.reason


@pytest.mark.parametrize(("text", "seconds"), [("20s", 20), ("10m", 600), ("1h", 3600),
                                               (5, 5), ("250ms", 0.25), ("7d", 604800),
                                               ("1.5h", 5400)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
