"""The batch writer against a real PostgreSQL: the fast path and its fallback store every row
once, a message the database refuses becomes a dead letter while the rest of its batch is
stored, device online-state changes are events in the outbox, partitions appear on demand."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from facility.db import registry
from facility.mqtt_session import Delivery
from ingest.batch import Assembler, Batch
from ingest.batch_writer import BatchWriter
from ingest.rows import Catalog, DeadLetterKind, Decoded, TelemetryRow
from tests.integration.ingest_support import BASE, at, telemetry, topic, ts, write_site


def catalog(tmp_path: Path, database_url: str, site_id: str) -> Catalog:
    site = write_site(tmp_path, site_id)
    with psycopg.connect(database_url) as conn:
        registry.sync_site(conn, site)
        return Catalog.build(site, registry.load_ids(conn, site_id))


def delivery(t: str, payload: bytes, *, dup: bool = False) -> Delivery:
    return Delivery(t.encode(), payload, 1, dup, False, 1)


def assemble(cat: Catalog, deliveries: list[Delivery]) -> tuple[Assembler, Batch]:
    assembler = Assembler(cat)
    assembler.clock(BASE + timedelta(minutes=10))
    batch = Batch()
    for d in deliveries:
        assembler.add(batch, d)
    return assembler, batch


def writer_for(database_url: str, site_id: str, assembler: Assembler) -> BatchWriter:
    def single(d: Delivery) -> Batch:
        one = Batch(deliveries=[d])
        one.add_decoded(assembler.decode(d), d.retain)
        return one
    return BatchWriter(database_url, site_id, single)


async def fetch(database_url: str, sql: str, *params: Any) -> list[Any]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return await (await conn.execute(sql, params)).fetchall()


async def test_fast_path_then_conflict_fallback_store_every_row_once(
    tmp_path: Path, database_url: str, site_id: str
) -> None:
    cat = catalog(tmp_path, database_url, site_id)
    tel = topic(site_id, "telemetry")
    first = [delivery(tel, telemetry(s, {"car_floor": s, "moving": True})) for s in (1, 2)]
    assembler, batch = assemble(cat, first)
    writer = writer_for(database_url, site_id, assembler)
    try:
        r1 = await writer.write(batch)
        # a replay of message 2 (no DUP flag, as after a gateway's buffer replay) with a new one
        _, batch2 = assemble(cat, [first[1], delivery(tel, telemetry(3, {"car_floor": 3}))])
        r2 = await writer.write(batch2)
    finally:
        await writer.close()
    assert (r1.telemetry_inserted, r1.staged_path) == (4, False)
    assert (r2.telemetry_staged, r2.telemetry_inserted, r2.staged_path) == (3, 1, True)
    floors = await fetch(database_url, "SELECT t.value, t.time FROM telemetry t JOIN points p"
                         " ON p.id = t.point_id WHERE p.name = 'car_floor' ORDER BY t.time")
    assert floors == [(1.0, at(1)), (2.0, at(2)), (3.0, at(3))]
    latest = await fetch(database_url, "SELECT l.value, l.time FROM latest_values l JOIN points p"
                         " ON p.id = l.point_id WHERE p.name = 'car_floor'")
    assert latest == [(3.0, at(3))]
    dirty = await fetch(database_url, "SELECT count(*) FROM telemetry_rollup_dirty")
    assert dirty[0][0] >= 1
    parts = await fetch(database_url, "SELECT count(*) FROM pg_inherits"
                        " WHERE inhparent = 'telemetry'::regclass")
    assert parts[0][0] >= 1  # made on demand for the batch's day


async def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    tmp_path: Path, database_url: str, site_id: str
) -> None:
    cat = catalog(tmp_path, database_url, site_id)
    floor = cat.point_ids[("a-elevator-1", "car_floor")]
    mode = cat.point_ids[("a-elevator-1", "service_mode")]
    good, poison = delivery("t/good", b"good"), delivery("t/poison", b"poison")
    decoded = {
        b"t/good": Decoded(telemetry=(TelemetryRow(at(1), floor, 4.0, None, 0),)),
        # validation keeps NUL out of strings; here it is forced through to the database
        b"t/poison": Decoded(telemetry=(TelemetryRow(at(1), mode, None, "a\x00b", 0),)),
    }
    batch = Batch(deliveries=[good, poison])
    for d in (good, poison):
        batch.add_decoded(decoded[d.topic], False)

    def single(d: Delivery) -> Batch:
        one = Batch(deliveries=[d])
        one.add_decoded(decoded[d.topic], False)
        return one

    writer = BatchWriter(database_url, site_id, single)
    try:
        result = await writer.write(batch)
    finally:
        await writer.close()
    assert result.telemetry_inserted == 1
    assert [d.kind for d in result.dead_letters] == [DeadLetterKind.DATABASE]
    assert await fetch(database_url, "SELECT point_id, value FROM telemetry") == [(floor, 4.0)]
    dead = await fetch(database_url, "SELECT topic, payload, reason FROM dead_letters")
    assert dead[0][:2] == ("t/poison", b"poison")
    assert dead[0][2].startswith("database refused")


async def test_device_online_state_changes_are_recorded_as_events(
    tmp_path: Path, database_url: str, site_id: str
) -> None:
    cat = catalog(tmp_path, database_url, site_id)
    st = topic(site_id, "status")

    def status(s: float, state: str) -> Delivery:
        return delivery(st, json.dumps({"ts": ts(s), "state": state, "reason": "r"}).encode())

    assembler, _ = assemble(cat, [])
    writer = writer_for(database_url, site_id, assembler)
    try:
        for group in ([status(1, "online")], [status(2, "online"), status(3, "offline")],
                      [status(1.5, "offline")]):  # the last is older: history only, no event
            _, batch = assemble(cat, group)
            await writer.write(batch)
    finally:
        await writer.close()
    got = await fetch(database_url, "SELECT kind, site_id, payload FROM events ORDER BY id")
    assert [(k, s, p["device"], p["state"], p["detail"]["previous"]) for k, s, p in got] == [
        ("device.status", site_id, "a-elevator-1", "online", None),
        ("device.status", site_id, "a-elevator-1", "offline", "online"),
    ]
    history = await fetch(database_url, "SELECT count(*) FROM device_status_history")
    assert history == [(4,)]
