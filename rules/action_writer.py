"""The engine's actions written to the database: ``ActionWriter`` applies a step's actions
(alarms raised, updated, cleared, grouped; rule state saved) and their outbox events in one
transaction, opens the work order of an alarm whose rule has a procedure (one open order
per alarm: a repeat links to the open one), reopens orders for alarms that annunciate
again, and opens the follow-up order of a critical fault found after the fact. It never
decides: the engine does; it never retries: the caller does."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from facility import events as outbox
from facility.messages import AlarmEvent
from facility.procedures import Procedure
from facility.site import Site
from rules.alarms import clear_alarm, group, raise_alarm, ungroup, update_alarm
from rules.definitions import RuleDef
from rules.engine_types import (
    Action,
    ClearAlarm,
    GroupAlarms,
    RaiseAlarm,
    SaveRuleState,
    UngroupAlarms,
    UpdateAlarm,
)
from rules.history import HistoricalAlarm
from rules.state_store import save_rule_state
from rules.work_orders import open_for_alarm

log = logging.getLogger(__name__)


class ActionWriter:
    """Writes through ``conn()`` (the guard's current connection, replaced on reconnect)."""

    def __init__(
        self, conn: Any, site: Site, procedures: dict[str, Procedure],
        device_ids: dict[str, int], rules: Sequence[RuleDef], sources: Sequence[str] | None,
    ) -> None:
        self._conn = conn
        self.site = site
        self.procedures = procedures
        self.device_ids = device_ids
        self._rule_procedures = {r.id: r.procedure for r in rules if r.procedure}
        self._rule_defs = {r.id: r for r in rules}
        # the alarm sources this process owns (None: the whole site)
        self._sources = None if sources is None else list(sources)

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        conn: psycopg.AsyncConnection[Any] = self._conn()
        return conn

    async def apply(self, actions: Sequence[Action]) -> list[AlarmEvent]:
        """Every action and its outbox events in one transaction (events recorded last)."""
        events: list[AlarmEvent] = []
        conn = self.conn
        async with conn.transaction():
            for act in actions:
                if isinstance(act, RaiseAlarm):
                    events += await self._raise(act)
                elif isinstance(act, UpdateAlarm):
                    events += await update_alarm(conn, act)
                    log.info("alarm %s/%s updated: %s", act.source, act.alarm_type, act.message)
                elif isinstance(act, ClearAlarm):
                    events += await clear_alarm(conn, act)
                    log.info("alarm %s/%s cleared", act.source, act.alarm_type)
                elif isinstance(act, GroupAlarms):
                    grouped = await group(conn, act)
                    if grouped:
                        log.info("%d alarms grouped under %s/%s", len(grouped), *act.parent)
                    events += grouped
                elif isinstance(act, UngroupAlarms):
                    events += await ungroup(conn, act)
                elif isinstance(act, SaveRuleState):
                    await save_rule_state(conn, act)
            await outbox.record(conn, self.site.id, events)
        return events

    async def _raise(self, act: RaiseAlarm) -> list[AlarmEvent]:
        device_id = self.device_ids.get(act.device) if act.device else None
        alarm, events = await raise_alarm(self.conn, self.site.id, device_id, act)
        how = "raised" if alarm.inserted else "repeated"
        if alarm.suppressed:
            how += f" suppressed under {act.suppressed_by}"
        log.info("alarm %s/%s %s (id %d): %s", act.source, act.alarm_type, how, alarm.id,
                 act.message)
        if act.procedure is None or not alarm.wants_work_order:
            return events
        if not alarm.inserted and alarm.work_order_id is not None \
                and await self._order_open(alarm.work_order_id):
            return events  # a repeat of an alarm whose order is still open
        return events + await self._open_work_order(
            device_id=device_id, source=act.source, fault=act.alarm_type, alarm_id=alarm.id,
            procedure=act.procedure, description=act.message, now=act.at)

    async def _open_work_order(
        self, *, device_id: int | None, source: str, fault: str, alarm_id: int,
        procedure: str, description: str, now: datetime, after_the_fact: bool = False,
    ) -> list[AlarmEvent]:
        """The one place an alarm opens (or links to) its work order."""
        return await open_for_alarm(
            self.conn, site_id=self.site.id, device_id=device_id, source=source, fault=fault,
            alarm_id=alarm_id, procedure=self.procedures[procedure], description=description,
            now=now, after_the_fact=after_the_fact)

    async def _order_open(self, wo_id: int) -> bool:
        cur = await self.conn.execute(
            "SELECT state NOT IN ('resolved', 'closed', 'cancelled') FROM work_orders"
            " WHERE id = %s", (wo_id,))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def reconcile(self, now: datetime) -> list[AlarmEvent]:
        """Work orders for active, annunciated alarms of rules with a procedure that have
        none (released from a group, returned to service); in the caller's transaction."""
        cur = await self.conn.execute(
            "SELECT id, device_id, source, alarm_type, rule_id, message FROM alarms"
            " WHERE site_id = %s AND active AND state <> 'normal' AND NOT suppressed"
            " AND NOT out_of_service AND NOT historical AND work_order_id IS NULL"
            " AND rule_id = ANY(%s) AND (%s::text[] IS NULL OR source = ANY(%s))"
            " ORDER BY id FOR UPDATE SKIP LOCKED",
            (self.site.id, list(self._rule_procedures), self._sources, self._sources))
        events: list[AlarmEvent] = []
        for alarm_id, device_id, source, fault, rule_id, text in await cur.fetchall():
            log.info("alarm %s/%s (id %d) annunciates again: opening its work order",
                     source, fault, alarm_id)
            events += await self._open_work_order(
                device_id=device_id, source=source, fault=fault, alarm_id=alarm_id,
                procedure=self._rule_procedures[rule_id], description=text, now=now)
        return events

    async def follow_up(self, item: HistoricalAlarm, alarm_id: int,
                        device_id: int | None) -> list[AlarmEvent]:
        """A critical fault (or one of a rule marked ``follow_up``) that began and ended while
        its gateway was cut off still reaches a person: a work order with its procedure,
        marked as found after the fact."""
        act = item.raised
        rule = self._rule_defs.get(act.rule_id)
        if rule is None or not rule.wants_follow_up or act.procedure is None \
                or act.suppressed_by is not None:
            return []
        log.warning("%s/%s began and ended while the gateway was cut off (%s to %s): opening "
                    "a follow-up work order", act.source, act.alarm_type, act.at.isoformat(),
                    item.cleared_at.isoformat())
        text = (f"{act.message} (事后发现 found after the fact: {act.at:%Y-%m-%d %H:%M:%S}"
                f" - {item.cleared_at:%H:%M:%S} UTC, 网关断线期间发生并已恢复 began and ended"
                " while the gateway was cut off)")
        return await self._open_work_order(
            device_id=device_id, source=act.source, fault=act.alarm_type, alarm_id=alarm_id,
            procedure=act.procedure, description=text, now=datetime.now(UTC),
            after_the_fact=True)
