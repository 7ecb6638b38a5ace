"""The batch writer against a real PostgreSQL: a message the database refuses becomes a dead
letter while the rest of its batch is stored."""

from __future__ import annotations

from pathlib import Path

import psycopg

from facility.db import registry
from ingest.batch_writer import BatchWriter, Item
from ingest.rows import Catalog, DeadLetterKind, Decoded, TelemetryRow
from tests.integration.ingest_support import at, write_site


def catalog(tmp_path: Path, database_url: str, site_id: str) -> Catalog:
    site = write_site(tmp_path, site_id)
    with psycopg.connect(database_url) as conn:
        registry.sync_site(conn, site)
        return Catalog.build(site, registry.load_ids(conn, site_id))


async def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    tmp_path: Path, database_url: str, site_id: str
) -> None:
    cat = catalog(tmp_path, database_url, site_id)
    floor = cat.point_ids[("a-elevator-1", "car_floor")]
    mode = cat.point_ids[("a-elevator-1", "service_mode")]
    good = Item("t/good", b"good", Decoded(telemetry=(TelemetryRow(at(1), floor, 4.0, None, 0),)))
    # validation keeps NUL out of strings; here it is forced through to the database
    poison = Item("t/poison", b"poison",
                  Decoded(telemetry=(TelemetryRow(at(1), mode, None, "a\x00b", 0),)))
    writer = BatchWriter(database_url)
    try:
        result = await writer.write([good, poison])
    finally:
        await writer.close()
    assert result.telemetry_inserted == 1
    assert [d.kind for d in result.dead_letters] == [DeadLetterKind.DATABASE]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        stored = await (await conn.execute("SELECT point_id, value FROM telemetry")).fetchall()
        dead = await (await conn.execute("SELECT topic, payload, reason FROM dead_letters")
                      ).fetchall()
    assert stored == [(floor, 4.0)]
    assert dead[0][:2] == ("t/poison", b"poison")
    assert dead[0][2].startswith("database refused")


async def test_rewriting_a_committed_batch_changes_nothing(
    tmp_path: Path, database_url: str, site_id: str
) -> None:
    cat = catalog(tmp_path, database_url, site_id)
    floor = cat.point_ids[("a-elevator-1", "car_floor")]
    batch = [Item("t", b"x", Decoded(telemetry=(TelemetryRow(at(1), floor, 4.0, None, 0),
                                                TelemetryRow(at(2), floor, 5.0, None, 0))))]
    writer = BatchWriter(database_url)
    try:
        first = await writer.write(batch)
        again = await writer.write(batch)
    finally:
        await writer.close()
    assert (first.telemetry_inserted, again.telemetry_inserted) == (2, 0)
    assert (again.telemetry_staged, again.dead_letters) == (2, [])
