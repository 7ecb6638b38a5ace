"""Work orders under dispatch (psycopg async): automatic assignment and the SLA sweep.

``start_order`` (in the caller's transaction) gives a new order to whoever is on call for its
trade (open -> assigned, actor ``dispatch``; the roster's backups when nobody is), or records
``unassigned`` and tells the duty-room channels; it starts the order's row in
``dispatch_timers`` and enqueues the notifications. It does nothing for an order already under
dispatch, so a repeat or a retry is harmless. ``sweep`` adopts orders opened elsewhere (by a
person at the service desk, or one whose hook failed), then advances every timer that is due
with the pure engine (``rules.dispatch.sla``): each breach, escalation and re-notification is
a work-order event (``work_order_events`` and the ``events`` outbox), an ``audit_log`` row and a
notification (loud: SMS and a call by the priority's rung until someone accepts), all in one
transaction; rows are taken ``FOR UPDATE SKIP LOCKED``. Like facility.workorders, every
function here records its own events in the outbox and returns them only for MQTT publishing
(callers must not record them again)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.events import record
from facility.messages import AlarmEvent
from facility.procedures import Procedure
from facility.workorders import add_event, transition
from rules.dispatch.channels import Notice
from rules.dispatch.config import Dispatch, Staff
from rules.dispatch.notify import enqueue
from rules.dispatch.roster import assignee
from rules.dispatch.sla import Breach, Clock, Escalate, Renotify, SlaAction, evaluate, policy_for

log = logging.getLogger(__name__)
ACTOR = "dispatch"
ADOPT_WINDOW = timedelta(days=1)
_ORDER = ("SELECT id, state, trade, procedure_id, created_at, title, source, priority, alarm_id,"
          " fault, assignee FROM work_orders WHERE id = %s FOR UPDATE")


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    state: str
    trade: str
    procedure_id: str | None
    created_at: datetime
    title: str
    source: str
    priority: str
    alarm_id: int | None
    fault: str
    assignee: str | None


@dataclass(frozen=True, slots=True)
class Context:
    site_id: str
    dispatch: Dispatch
    procedures: dict[str, Procedure]

    def people(self, *usernames: str | None) -> tuple[Staff, ...]:
        cfg = self.dispatch.config
        found = [cfg.person(u) or Staff(username=u) for u in dict.fromkeys(usernames) if u]
        return tuple(found)

    def channels(self, *rosters: str) -> tuple[str, ...]:
        cfg = self.dispatch.config
        return tuple(c for r in rosters if r in cfg.rosters for c in cfg.rosters[r].channels)


def _event(order: Order, name: str, now: datetime, state: str, detail: dict[str, Any]
           ) -> AlarmEvent:
    return AlarmEvent(ts=now, event=f"work_order.{name}", work_order_id=order.id,
                      alarm_id=order.alarm_id, device=order.source, alarm_type=order.fault,
                      state=state, priority=order.priority, detail=detail)


def _notice(ctx: Context, order: Order, event: str, now: datetime, state: str,
            people: tuple[Staff, ...], detail: str = "") -> Notice:
    return Notice(event, ctx.site_id, order.id, order.title, order.source, order.priority,
                  state, now, people, detail, alarm_id=order.alarm_id)


async def _load(conn: psycopg.AsyncConnection[Any], wo_id: int) -> Order | None:
    row = await (await conn.execute(_ORDER, (wo_id,))).fetchone()
    return None if row is None else Order(*row)


async def start_order(conn: psycopg.AsyncConnection[Any], ctx: Context, wo_id: int,
                      now: datetime) -> list[AlarmEvent]:
    """Assign a new order and start its SLA clock; [] if it is already under dispatch."""
    order = await _load(conn, wo_id)
    if order is None:
        return []
    cur = await conn.execute(
        "INSERT INTO dispatch_timers (work_order_id, site_id, procedure_id, opened_at,"
        " updated_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (order.id, ctx.site_id, order.procedure_id, order.created_at, now))
    if await cur.fetchone() is None:
        return []
    events: list[AlarmEvent] = []
    state, person = order.state, order.assignee
    cfg = ctx.dispatch.config
    if state == "open":
        oc = assignee(cfg, order.trade, now)
        if oc is not None:
            note = f"on call: {oc.roster} / {oc.shift}"
            events.append(await transition(conn, order.id, "assigned", ACTOR, now=now,
                                           assignee=oc.username, note=note))
            state, person = "assigned", oc.username
            await enqueue(conn, cfg, _notice(ctx, order, "assigned", now, state,
                                             ctx.people(person), note),
                          ctx.channels(order.trade), cancel_when="order_accepted")
            log.info("work order %d assigned to %s (%s)", order.id, person, note)
        else:
            await add_event(conn, order.id, "unassigned", ACTOR, now,
                            detail={"roster": order.trade})
            ev = _event(order, "unassigned", now, state, {"roster": order.trade})
            await record(conn, ctx.site_id, [ev])
            events.append(ev)
            await enqueue(conn, cfg, _notice(ctx, order, "unassigned", now, state, ()),
                          ctx.channels(order.trade))
            log.warning("work order %d: nobody on call for %s", order.id, order.trade)
    due = _first_due(ctx, order, state, now)
    await conn.execute(
        "UPDATE dispatch_timers SET due_at = %s, notified = %s WHERE work_order_id = %s",
        (due, [person] if person else [], order.id))
    return events


def _first_due(ctx: Context, order: Order, state: str, now: datetime) -> datetime | None:
    procedure = ctx.procedures.get(order.procedure_id or "")
    if procedure is None:
        return None
    decision = evaluate(Clock(order.id, order.created_at),
                        policy_for(procedure, ctx.dispatch.config.escalation), state, now)
    return now if decision.actions else decision.due_at


async def sweep(conn: psycopg.AsyncConnection[Any], ctx: Context, now: datetime,
                limit: int = 100) -> list[AlarmEvent]:
    """Adopt new orders, then advance every due timer; returns the events to publish."""
    events: list[AlarmEvent] = []
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT w.id FROM work_orders w WHERE w.site_id = %s AND w.origin <> 'schedule'"
            " AND w.state = 'open' AND w.created_at > %s AND NOT EXISTS"
            " (SELECT 1 FROM dispatch_timers t WHERE t.work_order_id = w.id)"
            " ORDER BY w.id LIMIT %s FOR UPDATE SKIP LOCKED",
            (ctx.site_id, now - ADOPT_WINDOW, limit))
        for (wo_id,) in await cur.fetchall():
            events += await start_order(conn, ctx, wo_id, now)
        cur = await conn.execute(
            "SELECT work_order_id, level, renotified, breached, notified FROM dispatch_timers"
            " WHERE site_id = %s AND due_at <= %s ORDER BY due_at LIMIT %s"
            " FOR UPDATE SKIP LOCKED", (ctx.site_id, now, limit))
        for wo_id, level, renotified, breached, notified in await cur.fetchall():
            order = await _load(conn, wo_id)
            if order is not None:
                events += await _advance(conn, ctx, order, now, level, renotified,
                                         frozenset(breached), list(notified))
    return events


async def _advance(conn: psycopg.AsyncConnection[Any], ctx: Context, order: Order,
                   now: datetime, level: int, renotified: int, breached: frozenset[str],
                   notified: list[str]) -> list[AlarmEvent]:
    procedure = ctx.procedures.get(order.procedure_id or "")
    if procedure is None:
        await conn.execute("UPDATE dispatch_timers SET due_at = NULL WHERE work_order_id = %s",
                           (order.id,))
        return []
    clock = Clock(order.id, order.created_at, level, renotified, breached)
    decision = evaluate(clock, policy_for(procedure, ctx.dispatch.config.escalation),
                        order.state, now)
    events = [await _act(conn, ctx, order, act, now, notified) for act in decision.actions]
    c = decision.clock
    await conn.execute(
        "UPDATE dispatch_timers SET level = %s, renotified = %s, breached = %s, notified = %s,"
        " due_at = %s, updated_at = %s WHERE work_order_id = %s",
        (c.level, c.renotified, sorted(c.breached), notified, decision.due_at, now, order.id))
    return events


async def _act(conn: psycopg.AsyncConnection[Any], ctx: Context, order: Order,
               act: SlaAction, now: datetime, notified: list[str]) -> AlarmEvent:
    """Record one SLA action as a work-order event and notify; ``notified`` grows."""
    cfg = ctx.dispatch.config
    if isinstance(act, Escalate):
        oc = assignee(cfg, act.role, now)
        person = oc.username if oc else None
        detail: dict[str, Any] = {"level": act.level, "role": act.role, "person": person,
                                  "note": act.note, "note_en": act.note_en,
                                  "deadline": act.deadline.isoformat()}
        name, line = "escalated", f"{act.role}: {act.note} {act.note_en}".strip()
        people = ctx.people(person, order.assignee)
        channels = ctx.channels(act.role, order.trade)
        if person and person not in notified:
            notified.append(person)
        log.warning("work order %d not accepted: escalated to level %d (%s -> %s)",
                    order.id, act.level, act.role, person or "nobody on call")
    elif isinstance(act, Renotify):
        people = ctx.people(order.assignee, *notified)
        detail = {"count": act.count, "people": [p.username for p in people]}
        name, line = "renotified", f"reminder {act.count}"
        channels = ctx.channels(order.trade)
    else:
        assert isinstance(act, Breach)
        detail = {"sla": act.sla, "deadline": act.deadline.isoformat()}
        name, line = "sla_breached", f"SLA {act.sla} missed at {act.deadline.isoformat()}"
        sup = assignee(cfg, cfg.escalation.supervisor_role, now)
        # the accept breach is told by the escalation that comes with it
        people = () if act.sla == "accept" else ctx.people(order.assignee,
                                                          sup.username if sup else None)
        channels = () if act.sla == "accept" else ctx.channels(order.trade)
        log.warning("work order %d missed its %s SLA", order.id, act.sla)
    await add_event(conn, order.id, name, ACTOR, now, detail=detail)
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, outcome, detail)"
        " VALUES (%s, %s, %s, %s, 'success', %s)",
        (now, ACTOR, f"work_order.{name}", f"work_order:{order.id}", Jsonb(detail)))
    if people or channels or name != "sla_breached":
        loud = None if name == "sla_breached" else "order_accepted"
        await enqueue(conn, cfg, _notice(ctx, order, name, now, order.state, people, line),
                      channels, cancel_when=loud)
    ev = _event(order, name, now, order.state, detail)
    await record(conn, ctx.site_id, [ev])
    return ev
