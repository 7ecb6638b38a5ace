"""What the dispatcher's integration tests share: the procedures, an all-day shift, a clock
the test moves by hand, a dispatcher running for the length of a block (its start failure
raised, its task cancelled at the end), a query polled until it returns rows, and an
entrapment alarm with its work order opened as rules would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from facility.procedures import Procedure, load_procedures
from rules.dispatch.service import Dispatcher
from rules.work_orders import open_for_alarm

PROCEDURES = load_procedures(Path(__file__).resolve().parents[2] / "procedures")
ALL_DAY = {"name": "all day", "days": "all", "start": "00:00", "end": "00:00"}


class Clock:
    """The dispatcher's clock, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(ready))
    try:
        async with asyncio.timeout(15):
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any,
                     timeout_s: float = 20) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` once there are any (TimeoutError after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while True:
            rows = list(await (await conn.execute(sql, args)).fetchall())
            if rows:
                return rows
            await asyncio.sleep(0.05)


async def open_entrapment(conn: psycopg.AsyncConnection[Any], now: datetime,
                          procedures: Mapping[str, Procedure]) -> int:
    """An active entrapment alarm of a-elevator-2 and its work order; the order's id."""
    cur = await conn.execute(
        "INSERT INTO alarms (site_id, source, alarm_type, rule_id, priority, state, active,"
        " raised_at) VALUES ('demo', 'a-elevator-2', 'entrapment', 'entrapment', 'critical',"
        " 'unack', true, %s) RETURNING id", (now,))
    alarm_id = (await cur.fetchone())[0]  # type: ignore[index]
    events = await open_for_alarm(
        conn, site_id="demo", device_id=None, source="a-elevator-2", fault="entrapment",
        alarm_id=alarm_id, procedure=procedures["elevator_entrapment"], description="trapped",
        now=now)
    assert events[0].event == "work_order.created"
    return int(events[0].work_order_id)  # type: ignore[arg-type]
