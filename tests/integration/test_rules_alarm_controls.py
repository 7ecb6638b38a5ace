"""Alarm lifecycle completeness against a real PostgreSQL: shelve with expiry (and the
automatic unshelve), out of service and back, grouping under a parent alarm, and every
operator transition recorded with actor and comment in alarm_events and in the event outbox
in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from facility.alarm_store import (
    AlarmStateError,
    CommentRequired,
    InvalidShelve,
    acknowledge,
    remove_from_service,
    return_to_service,
    shelve,
    unshelve,
    unshelve_expired,
)
from rules.alarms import clear_alarm, group, raise_alarm, ungroup
from rules.engine_types import ClearAlarm, GroupAlarms, RaiseAlarm, UngroupAlarms

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def act(s: float, source: str = "a-pumps", atype: str = "low_pressure",
        parent: tuple[str, str] | None = None) -> RaiseAlarm:
    return RaiseAlarm(source, source, "gw-a", atype, atype, "high", "pump_set_fault", "低压",
                      {}, at(s), parent)


async def rows(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, args)
    return list(await cur.fetchall())


async def test_shelve_expires_automatically_and_a_new_alarm_inherits_the_shelve(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        alarm, _ = await raise_alarm(conn, "s", None, act(0))
        with pytest.raises(CommentRequired):
            await shelve(conn, alarm.id, "op", at(1), until=at(600), comment=" ")
        with pytest.raises(InvalidShelve):
            await shelve(conn, alarm.id, "op", at(1), until=at(0), comment="nuisance")
        with pytest.raises(InvalidShelve):
            await shelve(conn, alarm.id, "op", at(1), until=at(73 * 3600), comment="nuisance")
        [ev] = await shelve(conn, alarm.id, "op", at(1), until=at(600), comment="sensor drift")
        assert ev.event == "alarm.shelved" and ev.detail["annunciate"] is False
        # acknowledged and cleared while shelved: closed; the fault comes back before expiry
        await acknowledge(conn, alarm.id, "op", at(2))
        await clear_alarm(conn, ClearAlarm("a-pumps", "a-pumps", "low_pressure",
                                           "low_pressure", at(3)))
        again, [raised] = await raise_alarm(conn, "s", None, act(100))
        assert again.inserted and again.shelved_until == at(600)
        assert raised.detail["annunciate"] is False
        assert await unshelve_expired(conn, at(599), site_id="s") == []
        [expired] = await unshelve_expired(conn, at(600), site_id="s")
        assert (expired.event, expired.alarm_id, expired.detail["annunciate"]) == (
            "alarm.unshelved", again.id, True)
        assert await rows(conn, "SELECT shelved_until FROM alarms WHERE id = %s",
                          again.id) == [(None,)]
        with pytest.raises(AlarmStateError):
            await unshelve(conn, again.id, "op", at(601))
        kinds = await rows(conn, "SELECT kind, payload->'detail'->>'actor' FROM events"
                                 " ORDER BY id")
        assert [k for k, _ in kinds] == ["alarm.shelved", "alarm.acknowledged",
                                         "alarm.unshelved"]
        assert kinds[0][1] == "op" and kinds[2][1] == "rules"
        [(detail,)] = await rows(conn, "SELECT detail FROM alarm_events"
                                       " WHERE event = 'shelved'")
        assert detail["comment"] == "sensor drift"


async def test_unshelve_by_hand(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        alarm, _ = await raise_alarm(conn, "s", None, act(0))
        await shelve(conn, alarm.id, "op", at(1), until=at(600), comment="flood")
        [ev] = await unshelve(conn, alarm.id, "op2", at(5), comment="done")
        assert ev.detail["actor"] == "op2" and ev.detail["annunciate"] is True
        assert await rows(conn, "SELECT shelved_until FROM alarm_controls") == [(None,)]


async def test_out_of_service_outlives_the_alarm_until_returned(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        alarm, _ = await raise_alarm(conn, "s", None, act(0))
        with pytest.raises(CommentRequired):
            await remove_from_service(conn, alarm.id, "tech", at(1), comment="")
        await remove_from_service(conn, alarm.id, "tech", at(1), comment="pump overhaul")
        with pytest.raises(AlarmStateError):
            await remove_from_service(conn, alarm.id, "tech", at(2), comment="again")
        # an out-of-service alarm nobody saw closes when it clears; a new one inherits it
        await clear_alarm(conn, ClearAlarm("a-pumps", "a-pumps", "low_pressure",
                                           "low_pressure", at(3)))
        assert await rows(conn, "SELECT state FROM alarms") == [("normal",)]
        second, _ = await raise_alarm(conn, "s", None, act(10))
        assert second.out_of_service and not second.wants_work_order
        [back] = await return_to_service(conn, alarm.id, "tech", at(20), comment="ok")
        assert back.event == "alarm.returned_to_service"
        assert await rows(conn, "SELECT out_of_service FROM alarms WHERE id = %s",
                          second.id) == [(False,)]
        with pytest.raises(AlarmStateError):
            await return_to_service(conn, second.id, "tech", at(21))
        kinds = [k for (k,) in await rows(conn, "SELECT kind FROM events ORDER BY id")]
        assert kinds == ["alarm.out_of_service", "alarm.returned_to_service"]


async def test_group_under_a_parent_and_release_when_it_clears(database_url: str) -> None:
    outage = ("a-switchgear", "power_outage")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        early, _ = await raise_alarm(conn, "s", None, act(0))  # before the outage was seen
        old, _ = await raise_alarm(conn, "s", None, act(-600, "a-elevator-1", "elevator_fault"))
        parent, _ = await raise_alarm(conn, "s", None, act(2, *outage))
        grouped = await group(conn, GroupAlarms(
            outage, (("a-pumps", "low_pressure"), ("a-elevator-1", "elevator_fault")),
            since=at(1), at=at(2)))
        # the pump's alarm came with the outage; the lift's fault is ten minutes older
        assert [(g.event, g.alarm_id) for g in grouped] == [("alarm.grouped", early.id)]
        child, [ev] = await raise_alarm(conn, "s", None,
                                        act(5, "a-elevator-2", "stopped_outside_door_zone",
                                            parent=outage))
        assert child.suppressed and ev.event == "alarm.suppressed"
        assert ev.detail["parent_alarm_id"] == parent.id and ev.detail["annunciate"] is False
        # the lift levels during the outage: a suppressed alarm closes at once, no ack needed
        await clear_alarm(conn, ClearAlarm("a-elevator-2", "a-elevator-2",
                                           "stopped_outside_door_zone",
                                           "stopped_outside_door_zone", at(8)))
        await clear_alarm(conn, ClearAlarm(*outage[:1], outage[0], *outage[1:], outage[1],
                                           at(60)))
        released = await ungroup(conn, UngroupAlarms(outage, at(60)))
        assert [(r.event, r.alarm_id) for r in released] == [("alarm.unsuppressed", early.id)]
        states = dict(await rows(conn, "SELECT id, (state, suppressed, parent_alarm_id)::text"
                                       " FROM alarms"))
        assert states[child.id] == f"(normal,t,{parent.id})"
        assert states[early.id] == f"(unack,f,{parent.id})"
        assert states[old.id] == "(unack,f,)"
