"""Ingest against a real broker and a real PostgreSQL: what is stored, what is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.integration.ingest_support import (
    at,
    eventually,
    publisher,
    query,
    rows,
    running_ingest,
    telemetry,
    topic,
    ts,
    write_site,
)

POINTS = ("SELECT p.name, t.value, t.value_text, t.quality, t.time FROM telemetry t"
          " JOIN points p ON p.id = t.point_id JOIN devices d ON d.id = p.device_id"
          " WHERE d.name = %s ORDER BY p.name, t.time")
LATEST = ("SELECT p.name, l.value, l.value_text, l.quality, l.time FROM latest_values l"
          " JOIN points p ON p.id = l.point_id JOIN devices d ON d.id = p.device_id"
          " WHERE d.name = %s ORDER BY p.name")


async def test_telemetry_is_stored_with_latest_values(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(topic(site_id, "telemetry"), telemetry(1, {
            "moving": True, "car_floor": 7, "load_kg": 312.5, "service_mode": "inspection",
        }, quality={"door_zone": "bad", "load_kg": "stale"}))
        got = await eventually(database_url, rows(POINTS, "a-elevator-1"), lambda r: len(r) == 5)
        latest = await eventually(database_url, rows(LATEST, "a-elevator-1"),
                                  lambda r: len(r) == 5)
    assert [r[:4] for r in got] == [
        ("car_floor", 7.0, None, 0),
        ("door_zone", None, None, 1),  # could not be read: a gap with bad quality
        ("load_kg", 312.5, None, 2),
        ("moving", 1.0, None, 0),
        ("service_mode", None, "inspection", 0),
    ]
    assert {r[4] for r in got} == {at(1)}
    assert [r[:4] for r in latest] == [r[:4] for r in got]
    assert counters.rows_written == 5 and counters.messages_in == 1


async def test_a_message_delivered_twice_is_stored_once(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    message = telemetry(2, {"car_floor": 3, "moving": False})
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(topic(site_id, "telemetry"), message)
        await pub.publish(topic(site_id, "telemetry"), message)
        await pub.publish(topic(site_id, "telemetry"), telemetry(3, {"car_floor": 4}))
        got = await eventually(database_url, rows(POINTS, "a-elevator-1"), lambda r: len(r) >= 3)
    assert [(r[0], r[1], r[4]) for r in got] == [
        ("car_floor", 3.0, at(2)), ("car_floor", 4.0, at(3)), ("moving", 0.0, at(2))]
    assert counters.redeliveries_ignored == 2


async def test_an_older_message_is_kept_but_latest_stays_newer(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol),
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(topic(site_id, "telemetry"), telemetry(20, {"car_floor": 5}))
        await eventually(database_url, rows(POINTS, "a-elevator-1"), lambda r: len(r) == 1)
        await pub.publish(topic(site_id, "telemetry"),
                          telemetry(10, {"car_floor": 2}, historical=True))
        got = await eventually(database_url, rows(POINTS, "a-elevator-1"), lambda r: len(r) == 2)
        latest = await eventually(database_url, rows(LATEST, "a-elevator-1"), lambda r: len(r) == 1)
    assert [(r[1], r[4]) for r in got] == [(2.0, at(10)), (5.0, at(20))]
    assert (latest[0][1], latest[0][4]) == (5.0, at(20))


NAN = (b'{"ts": "%s", "seq": 1, "session": "s", "points": {"load_kg": NaN}}' % ts(1).encode())
BAD_INPUTS = [
    pytest.param("telemetry", "a-elevator-1", b"{oops", "not JSON", id="malformed-json"),
    pytest.param("telemetry", "a-elevator-1", telemetry(1, {"car_floor": 1}, seq="x"), "seq",
                 id="wrong-type"),
    pytest.param("telemetry", "a-elevator-1", NAN, "load_kg", id="nan"),
    pytest.param("telemetry", "zz-unknown", telemetry(1, {"car_floor": 1}), "unknown device",
                 id="unknown-device"),
    pytest.param("telemetry", "a-elevator-1", telemetry(1, {"warp": 1}), "unknown point",
                 id="unknown-point"),
    pytest.param("telemetry", "A-Elevator", telemetry(1, {"car_floor": 1}), "[a-z0-9_-]+",
                 id="topic-outside-contract"),
    pytest.param("telemetry", "a-elevator-1", telemetry(4 * 86400, {"car_floor": 1}), "ahead",
                 id="future-timestamp"),
    pytest.param("telemetry", "a-elevator-1",
                 telemetry(1, {"car_floor": 1}, pad="x" * 300_000), "exceeds", id="oversized"),
    pytest.param("status", "a-elevator-1", b'{"ts": "%s", "state": "asleep"}' % ts(1).encode(),
                 "state", id="bad-status"),
]


@pytest.mark.parametrize(("kind", "device", "payload", "needle"), BAD_INPUTS)
async def test_bad_input_is_dead_lettered_and_ingest_goes_on(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
    kind: str, device: str, payload: bytes, needle: str,
) -> None:
    site = write_site(tmp_path, site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        bad_topic = topic(site_id, kind, device=device)
        await pub.publish(bad_topic, payload)
        await pub.publish(topic(site_id, "telemetry"), telemetry(30, {"car_floor": 9}))
        got = await eventually(database_url, rows(POINTS, "a-elevator-1"),
                               lambda r: any(x[1] == 9.0 for x in r))
        dead = await eventually(
            database_url, rows("SELECT consumer, topic, payload, reason FROM dead_letters"),
            lambda r: len(r) == 1)
    assert dead[0][:3] == ("ingest", bad_topic, payload)
    assert needle in dead[0][3]
    assert [(r[0], r[1]) for r in got] == [("car_floor", 9.0)]
    assert counters.dead_letters == 1


async def test_device_status_goes_to_status_and_history(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    status = topic(site_id, "status", device="b-elevator-1", gateway="gw-b")

    def body(seconds: float, state: str, reason: str = "") -> bytes:
        return json.dumps({"ts": ts(seconds), "state": state, "reason": reason}).encode()

    history = rows("SELECT h.state, h.reason, h.time FROM device_status_history h"
                   " JOIN devices d ON d.id = h.device_id WHERE d.name = 'b-elevator-1'"
                   " ORDER BY h.time")
    current = rows("SELECT s.state, s.reason, s.time FROM device_status s"
                   " JOIN devices d ON d.id = s.device_id WHERE d.name = 'b-elevator-1'")
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol),
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(status, body(1, "offline", "3 polls failed: timeout"))
        await eventually(database_url, current, lambda r: r == [
            ("offline", "3 polls failed: timeout", at(1))])
        await pub.publish(status, body(5, "online"))
        await eventually(database_url, current, lambda r: r == [("online", "", at(5))])
        await pub.publish(status, body(3, "offline", "late"))  # older: history only
        got = await eventually(database_url, history, lambda r: len(r) == 3)
        assert await query(database_url, current) == [("online", "", at(5))]
    assert got == [("offline", "3 polls failed: timeout", at(1)), ("offline", "late", at(3)),
                   ("online", "", at(5))]


async def test_stale_gateway_death_does_not_mark_a_reconnected_gateway_offline(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    gw = f"facility/v1/{site_id}/gw-a/status"

    def body(seconds: float, state: str, session: str) -> bytes:
        return json.dumps({"ts": ts(seconds), "state": state, "session": session}).encode()

    current = rows("SELECT state, session, time FROM gateway_status WHERE site_id = %s"
                   " AND gateway = 'gw-a'", site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol),
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(gw, body(1, "online", "s1"))
        await pub.publish(gw, body(5, "online", "s2"))  # reconnected as a new session
        await pub.publish(gw, body(6, "offline", "s1"))  # the first session's late will
        await pub.publish(topic(site_id, "telemetry"), telemetry(7, {"car_floor": 1}))
        await eventually(database_url, rows(POINTS, "a-elevator-1"), lambda r: len(r) == 1)
        assert await query(database_url, current) == [("online", "s2", at(5))]
        await pub.publish(gw, body(5, "offline", "s2"))  # its own will: ts of its birth
        await eventually(database_url, current, lambda r: r == [("offline", "s2", at(5))])


async def test_shared_subscription_group_stores_telemetry(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol,
                               share_group="ingest"),
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(topic(site_id, "telemetry"), telemetry(1, {"car_floor": 6}))
        got = await eventually(database_url, rows(POINTS, "a-elevator-1"), lambda r: len(r) == 1)
    assert got[0][:2] == ("car_floor", 6.0)



async def test_a_burst_is_written_in_batches_bounded_by_rows(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    points = {"car_floor": 1, "moving": True, "passengers": 2, "load_kg": 150}
    n = 1000
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol,
                               batch_rows=400) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        for start in range(0, n, 250):
            await asyncio.gather(*(
                pub.publish_nowait(topic(site_id, "telemetry"), telemetry(i / 100, points))
                for i in range(start, start + 250)))
        await eventually(database_url, rows("SELECT count(*) FROM telemetry"),
                         lambda r: r[0][0] == n * len(points))
    assert counters.rows_written == n * len(points)
    assert counters.batches >= n * len(points) // 400  # no batch over 400 rows


async def test_retained_status_published_before_start_is_stored_with_a_share_group(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    gw = f"facility/v1/{site_id}/gw-a/status"
    async with publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub:
        await pub.publish(gw, json.dumps({"ts": ts(1), "state": "online", "session": "s1"})
                          .encode(), retain=True)
        try:
            async with running_ingest(site, database_url, mqtt_url, mqtt_protocol,
                                      share_group="ingest"):
                got = await eventually(
                    database_url, rows("SELECT state, session FROM gateway_status"),
                    lambda r: len(r) == 1)
        finally:
            await pub.publish(gw, b"", retain=True)  # clear the retained message
    assert got == [("online", "s1")]


FLAGS = ("SELECT p.name, l.quality, l.flags FROM latest_values l"
         " JOIN points p ON p.id = l.point_id JOIN devices d ON d.id = p.device_id"
         " WHERE d.name = %s ORDER BY p.name")


async def test_flags_ride_on_latest_values_and_malformed_ones_are_dead_lettered(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str
) -> None:
    site = write_site(tmp_path, site_id)
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as counters,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        await pub.publish(topic(site_id, "telemetry"), telemetry(
            1, {"car_floor": 7}, quality={"door_zone": "bad"},
            flags={"door_zone": "fault,open-loop", "car_floor": "overridden"}))
        await eventually(database_url, rows(FLAGS, "a-elevator-1"), lambda r: r == [
            ("car_floor", 0, "overridden"), ("door_zone", 1, "fault,open-loop")])
        # flags are the latest message's: none now for car_floor; door_zone's other words.
        # The malformed entry is dropped, the rest of the message stored, a dead letter says
        await pub.publish(topic(site_id, "telemetry"), telemetry(
            2, {"car_floor": 8, "moving": False}, quality={"door_zone": "bad"},
            flags={"door_zone": "out-of-service", "moving": 1}))
        await eventually(database_url, rows(FLAGS, "a-elevator-1"), lambda r: r == [
            ("car_floor", 0, None), ("door_zone", 1, "out-of-service"), ("moving", 0, None)])
        dead = await eventually(database_url, rows("SELECT reason FROM dead_letters"),
                                lambda r: len(r) == 1)
        await pub.publish(topic(site_id, "telemetry"), telemetry(
            3, {"car_floor": 9}, flags=["fault"]))
        await eventually(database_url, rows(LATEST, "a-elevator-1"),
                         lambda r: r[0][:2] == ("car_floor", 9.0))
        await eventually(database_url, rows("SELECT reason FROM dead_letters"),
                         lambda r: len(r) == 2)
    assert "flags dropped: flags of point moving is a JSON number" in dead[0][0]
    assert "(3 known point(s) stored)" in dead[0][0]
    assert counters.dead_letters_by_kind == {"flags": 2}
    # the history keeps values and qualities; the flags are the latest value's only
    history = await query(database_url, rows(POINTS, "a-elevator-1"))
    assert [r[:4] for r in history if r[0] == "door_zone"] == [
        ("door_zone", None, None, 1), ("door_zone", None, None, 1)]
