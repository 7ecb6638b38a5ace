from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg

from facility import events
from facility.messages import AlarmEvent


async def test_recorded_events_are_replayed_in_order_and_notified(database_url: str) -> None:
    listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await listener.execute(f"LISTEN {events.CHANNEL}")
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.transaction():
            await events.record(conn, "demo", [
                AlarmEvent(ts=now, event="alarm.raised", alarm_id=1, device="a-elevator-2"),
                AlarmEvent(ts=now, event="work_order.created", work_order_id=7),
            ])
        rows = await events.since(conn, 0)
        assert [(k, p.get("alarm_id"), p.get("work_order_id")) for _, k, p in rows] == [
            ("alarm.raised", 1, None), ("work_order.created", None, 7)]
        assert await events.since(conn, rows[0][0]) == rows[1:]
        assert await events.since(conn, 0, site_id="other") == []
    notified = []
    async with asyncio.timeout(5):
        async for note in listener.notifies():
            notified.append(int(note.payload))
            if len(notified) == 2:
                break
    assert notified == [r[0] for r in rows]
    await listener.close()


async def test_rolled_back_events_are_not_seen(database_url: str) -> None:
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        try:
            async with conn.transaction():
                await events.record(conn, "demo", [AlarmEvent(ts=now, event="alarm.raised")])
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        assert await events.since(conn, 0) == []
