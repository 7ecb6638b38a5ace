"""Alarm and work-order storage against a real PostgreSQL: the unique open alarm and open
work order under concurrency, ISA-18.2 transitions, work-order transitions and steps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from facility.alarm_store import AlarmNotFound, AlarmStateError, acknowledge
from facility.procedures import load_procedures, upsert_procedures
from facility.workorders import (
    AssigneeRequired,
    StepsIncomplete,
    TransitionForbidden,
    complete_step,
    transition,
)
from rules.alarms import clear_alarm, raise_alarm
from rules.engine_types import ClearAlarm, RaiseAlarm
from rules.work_orders import open_for_alarm

ROOT = Path(__file__).resolve().parents[2]
PROCS = load_procedures(ROOT / "procedures")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def raise_act(s: float = 0, source: str = "a-elevator-1") -> RaiseAlarm:
    return RaiseAlarm(source, source, "gw-a", "entrapment", "entrapment", "critical",
                      "elevator_entrapment", "电梯困人", {"values": {"passengers": 2}}, at(s))


def clear_act(s: float, source: str = "a-elevator-1") -> ClearAlarm:
    return ClearAlarm(source, source, "entrapment", "entrapment", at(s))


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def rows(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, args)
    return list(await cur.fetchall())


async def test_concurrent_raises_open_one_alarm_and_count_repeats(database_url: str) -> None:
    conns = [await connect(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(raise_alarm(c, "s", None, raise_act(i))
                                         for i, c in enumerate(conns)))
        assert sum(r[0].inserted for r in results) == 1
        [(count, repeats, state)] = await rows(
            conns[0], "SELECT count(*), max(repeat_count), max(state) FROM alarms")
        assert (count, repeats, state) == (1, 3, "unack")
        events = await rows(conns[0], "SELECT event FROM alarm_events ORDER BY event")
        assert [e[0] for e in events] == ["raised", "repeat", "repeat", "repeat"]
    finally:
        for c in conns:
            await c.close()


async def test_isa_lifecycle_clear_reraise_ack(database_url: str) -> None:
    async with await connect(database_url) as conn:
        alarm, msgs = await raise_alarm(conn, "s", None, raise_act(0))
        assert msgs[0].event == "alarm.raised" and msgs[0].state == "unack"
        assert [m.event for m in await clear_alarm(conn, clear_act(5))] == ["alarm.cleared"]
        assert await clear_alarm(conn, clear_act(6)) == []  # nothing active: nothing to do
        [(state, active)] = await rows(conn, "SELECT state, active FROM alarms")
        assert (state, active) == ("rtn_unack", False)
        again, msgs = await raise_alarm(conn, "s", None, raise_act(10))  # returns before ack
        assert again.id == alarm.id and not again.inserted and again.state == "unack"
        assert msgs[0].event == "alarm.repeat"
        ack = await acknowledge(conn, alarm.id, "operator", at(11))
        assert [m.event for m in ack] == ["alarm.acknowledged"] and ack[0].state == "ack"
        with pytest.raises(AlarmStateError) as err:
            await acknowledge(conn, alarm.id, "operator", at(12))
        assert err.value.state == "ack"
        closed = await clear_alarm(conn, clear_act(20))
        assert [m.event for m in closed] == ["alarm.cleared", "alarm.closed"]
        [(state, closed_at, by)] = await rows(conn, "SELECT state, closed_at, acked_by"
                                                    " FROM alarms")
        assert (state, closed_at, by) == ("normal", at(20), "operator")
        new, _ = await raise_alarm(conn, "s", None, raise_act(30))
        assert new.inserted and new.id != alarm.id
        with pytest.raises(AlarmNotFound):
            await acknowledge(conn, 999_999, "operator", at(31))


async def test_acknowledging_a_returned_alarm_closes_it(database_url: str) -> None:
    async with await connect(database_url) as conn:
        alarm, _ = await raise_alarm(conn, "s", None, raise_act(0))
        await clear_alarm(conn, clear_act(1))
        msgs = await acknowledge(conn, alarm.id, "operator", at(2))
        assert [m.event for m in msgs] == ["alarm.acknowledged", "alarm.closed"]
        assert await rows(conn, "SELECT state, closed_at FROM alarms") == [("normal", at(2))]


async def _order(conn: psycopg.AsyncConnection[Any], s: float = 0) -> int:
    alarm, _ = await raise_alarm(conn, "s", None, raise_act(s))
    msgs = await open_for_alarm(conn, site_id="s", device_id=None, source="a-elevator-1",
                                fault="entrapment", alarm_id=alarm.id,
                                procedure=PROCS["elevator_entrapment"], description="x",
                                now=at(s))
    assert msgs[0].work_order_id is not None
    return msgs[0].work_order_id


async def test_one_open_work_order_per_fault_and_repeats_are_linked(database_url: str) -> None:
    async with await connect(database_url) as conn:
        await upsert_procedures(conn, PROCS)
        await upsert_procedures(conn, PROCS)  # unchanged: version stays 1
        assert await rows(conn, "SELECT DISTINCT version FROM procedures") == [(1,)]
        conns = [await connect(database_url) for _ in range(3)]
        try:
            ids = await asyncio.gather(*(_order(c, i) for i, c in enumerate(conns)))
        finally:
            for c in conns:
                await c.close()
        assert len(set(ids)) == 1
        events = await rows(conn, "SELECT event FROM work_order_events ORDER BY id")
        assert [e[0] for e in events] == ["created", "linked_repeat", "linked_repeat"]
        [(due, created)] = await rows(conn, "SELECT due_at, created_at FROM work_orders")
        assert due - created == timedelta(hours=2)  # the procedure's resolve SLA


async def test_transitions_steps_and_resolution(database_url: str) -> None:
    async with await connect(database_url) as conn:
        await upsert_procedures(conn, PROCS)
        wo = await _order(conn)
        with pytest.raises(AssigneeRequired):
            await transition(conn, wo, "assigned", "operator", now=at(1))
        with pytest.raises(TransitionForbidden):
            await transition(conn, wo, "on_site", "li", now=at(1))
        await transition(conn, wo, "assigned", "operator", now=at(1), assignee="li")
        ev = await transition(conn, wo, "accepted", "li", now=at(2))
        assert ev.event == "work_order.accepted" and ev.detail["assignee"] == "li"
        await transition(conn, wo, "on_site", "li", now=at(3))
        with pytest.raises(StepsIncomplete) as err:
            await transition(conn, wo, "resolved", "li", now=at(4))
        required = [s.required for s in PROCS["elevator_entrapment"].steps]
        assert err.value.steps == tuple(i + 1 for i, r in enumerate(required) if r)
        for seq in err.value.steps:
            assert await complete_step(conn, wo, seq, "li", now=at(5)) is not None
        assert await complete_step(conn, wo, 1, "li", now=at(6)) is None  # already done
        await transition(conn, wo, "resolved", "li", now=at(7))
        await transition(conn, wo, "closed", "operator", now=at(8))
        [(state, resolved, closed, assignee)] = await rows(
            conn, "SELECT state, resolved_at, closed_at, assignee FROM work_orders")
        assert (state, resolved, closed, assignee) == ("closed", at(7), at(8), "li")
        trail = await rows(conn, "SELECT event, actor, from_state, to_state"
                                 " FROM work_order_events WHERE event <> 'step_done' ORDER BY id")
        assert trail == [
            ("created", "rules", None, "open"), ("assigned", "operator", "open", "assigned"),
            ("accepted", "li", "assigned", "accepted"), ("arrived", "li", "accepted", "on_site"),
            ("resolved", "li", "on_site", "resolved"), ("closed", "operator", "resolved", "closed"),
        ]
        # closed: the next alarm of the same fault opens a new order
        assert await _order(conn, 100) != wo
