"""The fast path decides exactly as the contract (``rows.decode``) does: whatever it accepts,
the slow path accepts with the same rows; whatever it declines, the slow path still decides
(stored or dead-lettered). Checked on hand-picked cases and on generated payloads, and the
assembler never raises on anything."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility.mqtt_session import Delivery
from ingest.batch import Assembler, Batch
from ingest.fast_path import (
    COPY_HEADER,
    COPY_TRAILER,
    FastDecoder,
    encode_row,
    flags_field,
    from_micros,
    latest_row,
    micros,
)
from ingest.rows import Catalog, decode
from ingest.sequences import SequenceTracker
from tests.unit.ingest.test_rows import CATALOG, NOW, TELEMETRY, TS, TS_DT

ENTRY_TOPIC = TELEMETRY.encode()
OLD = CATALOG.__class__(**{**{f: getattr(CATALOG, f) for f in (
    "site_id", "gateways", "device_ids", "device_gateway", "point_ids")},
    "max_age": timedelta(days=30)})


def fast(payload: bytes, catalog: Catalog = CATALOG) -> list[bytes] | None:
    """The rows as latest_values gets them (with their flags), or None: declined."""
    d = FastDecoder(catalog)
    d.window(NOW)
    out = d.telemetry(d.entries[ENTRY_TOPIC], payload)
    if out is None:
        return None
    flags = out.flags or {}
    return sorted(latest_row(r, flags_field(flags.get(pid))) for pid, r in out.rows)


def slow(payload: bytes, catalog: Catalog = CATALOG) -> list[bytes] | None:
    out = decode(TELEMETRY, payload, catalog, NOW)
    if out.dead_letter is not None:
        return None
    return sorted(latest_row(encode_row(r), flags_field(r.flags)) for r in out.telemetry)


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {"ts": TS, "seq": 7, "session": "s-1", "points": {"car_floor": 3}}
    return json.dumps(base | fields).encode()


@pytest.mark.parametrize("payload", [
    body(),
    body(points={"moving": True, "car_floor": -2, "load_kg": 12.25, "mode": "auto"}),
    body(points={"car_floor": 1}, quality={"load_kg": "bad", "car_floor": "stale",
                                           "moving": "good"}),
    body(ts="2025-03-01T19:59:59.5+08:00", historical=True, extra={"ignored": 1}),
    body(points={"mode": "中文 ok"}),
    body(points={"car_floor": 1}, quality={"load_kg": "bad"}, flags=None),
    # flags ride on the points with a row; a name without one (unknown, absent) is ignored
    body(points={"car_floor": 1, "mode": "auto"}, quality={"load_kg": "bad"},
         flags={"load_kg": "fault,open-loop", "car_floor": "in-alarm", "warp": "fault",
                "moving": "out-of-service"}),
])
def test_accepted_payloads_give_the_rows_of_the_contract(payload: bytes) -> None:
    rows = fast(payload)
    assert rows is not None
    assert rows == slow(payload)


@pytest.mark.parametrize("payload", [
    b"{oops", b"[]", b"null",
    body(seq=-1), body(seq="7"), body(seq=True), body(session=""), body(session="x" * 65),
    body(ts="2025-03-01 11:59:59Z"), body(ts="2025-03-01T11:59:59"), body(ts=1740830400),
    body(ts="2025-03-05T00:00:00Z"),  # more than a day ahead
    body(points={"warp": 1}), body(points={"car_floor": None}), body(points={"car_floor": [1]}),
    body(points={"mode": "a\u0000b"}), body(points={"mode": "x" * 257}),
    body(quality={"car_floor": "meh"}), body(quality={"zz": "bad"}), body(historical="yes"),
    b'{"ts": "%s", "seq": 1, "session": "s", "points": {"load_kg": NaN}}' % TS.encode(),
    body(points={"car_floor": 1}, pad="x" * 300_000),
    body(flags=["fault"]), body(flags="fault"), body(flags={"car_floor": 1}),
    body(flags={"car_floor": "a\u0000b"}), body(flags={"car_floor": "x" * 257}),
])
def test_the_fast_path_declines_what_it_cannot_prove_good(payload: bytes) -> None:
    assert fast(payload) is None


def test_timestamps_older_than_the_retention_are_declined_and_refused() -> None:
    payload = body(ts="2025-01-01T00:00:00Z")
    assert fast(payload) is not None  # default max_age: a year
    assert fast(payload, OLD) is None
    out = decode(TELEMETRY, payload, OLD, NOW)
    assert out.dead_letter is not None and "retention" in out.dead_letter.reason


def test_malformed_flags_are_declined_and_the_contract_stores_the_rest() -> None:
    payload = body(points={"car_floor": 3}, quality={"load_kg": "bad"},
                   flags={"car_floor": 5, "load_kg": "fault"})
    assert fast(payload) is None
    out = decode(TELEMETRY, payload, CATALOG, NOW)
    assert {(r.value, r.quality, r.flags) for r in out.telemetry} == {
        (3.0, 0, None), (None, 1, "fault")}
    assert out.dead_letter is not None and out.dead_letter.kind == "flags"
    assert "car_floor is a JSON number" in out.dead_letter.reason


def test_the_batch_gives_latest_values_the_flags_of_each_points_newest_row() -> None:
    assembler = Assembler(CATALOG)
    assembler.clock(NOW)
    batch = Batch()
    older = body(ts="2025-03-01T11:00:00Z", quality={"load_kg": "bad"},
                 flags={"load_kg": "fault,open-loop"})
    newer = body(points={"car_floor": 4}, quality={"load_kg": "bad"},
                 flags={"load_kg": "out-of-service"})
    for seq, payload in enumerate((newer, older)):
        assembler.add(batch, Delivery(ENTRY_TOPIC, payload, 1, False, False, seq))
    assert assembler.fast_messages == 2
    data = batch.latest_data()
    assert b"out-of-service" in data and b"open-loop" not in data
    assert data.count(b"\x00\x06") >= len(batch.latest)  # six fields per row


def test_time_encoding_round_trips() -> None:
    assert from_micros(micros(TS_DT)) == TS_DT
    assert micros(from_micros(0)) == 0


values = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
                   st.text(max_size=300), st.none(), st.lists(st.integers(), max_size=2))
names = st.sampled_from(["moving", "car_floor", "load_kg", "mode", "warp", ""])
messages = st.fixed_dictionaries(
    {"ts": st.one_of(st.just(TS), st.sampled_from([
        "2025-03-01T11:00:00Z", "2025-03-01T11:00:00.123456+01:00", "2025-02-30T00:00:00Z",
        "2030-01-01T00:00:00Z", "2025-03-01T11:00:00.1234567Z", "garbage"]),
        st.integers(), st.none()),
     "seq": st.one_of(st.integers(-5, 2**64), st.text(max_size=3), st.booleans()),
     "session": st.one_of(st.text(max_size=70), st.integers()),
     "points": st.one_of(st.dictionaries(names, values, max_size=5), st.lists(values)),
     },
    optional={"quality": st.dictionaries(names, st.sampled_from(
        ["good", "bad", "stale", "other", 1])), "historical": st.one_of(
        st.booleans(), st.integers(0, 1), st.text(max_size=4)),
        "flags": st.one_of(st.none(), st.text(max_size=3), st.lists(st.text(max_size=3)),
                           st.dictionaries(names, st.one_of(
                               st.text(max_size=300), st.integers(), st.none())))},
)


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, allow_nan=True).encode()


@settings(max_examples=200, deadline=None)
@given(messages)
def test_generated_payloads_fast_path_never_disagrees_with_the_contract(
        msg: dict[str, Any]) -> None:
    payload = encode(msg)
    rows = fast(payload)
    if rows is not None:
        assert rows == slow(payload)


garbage = st.one_of(st.binary(max_size=200), messages.map(encode))
topics = st.sampled_from([TELEMETRY, "facility/v1/s1/gw-a/a-elevator-1/status",
                          "facility/v1/s1/gw-a/status", "facility/v1/s1/gw-a/a-elevator-1/birth",
                          "facility/v1/s1/gw-b/a-elevator-1/telemetry", "nope",
                          "facility/v1/s1/alarms", "facility/v1/s1/gw-a/zz/telemetry"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(topics, garbage, st.booleans()), min_size=1, max_size=12))
def test_fuzzed_deliveries_never_crash_and_each_is_stored_or_dead_lettered(
        deliveries: list[tuple[str, bytes, bool]]) -> None:
    assembler = Assembler(CATALOG, SequenceTracker())
    assembler.clock(NOW)
    batch = Batch()
    expected_dead = expected_rows = 0
    for topic, payload, dup in deliveries:
        oracle = decode(topic, payload, CATALOG, NOW)
        expected_dead += oracle.dead_letter is not None
        expected_rows += len(oracle.telemetry)
        assembler.add(batch, Delivery(topic.encode(), payload, 1, dup, False, 1))
    assert len(batch.dead_letters) == expected_dead
    assert batch.rows == expected_rows
    assert len(batch.deliveries) == len(deliveries)
    assert batch.copy_data().startswith(COPY_HEADER)
    assert batch.copy_data().endswith(COPY_TRAILER)
