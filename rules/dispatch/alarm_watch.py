"""The acknowledgement SLA of alarms in the database (psycopg async), run by the dispatcher's
sweep in one transaction.

``adopt`` starts a timer (``alarm_timers``) for every alarm of the site raised unacknowledged,
active and annunciated (not suppressed, shelved or out of service) that has none: the
acknowledge time of the procedure of its work order, else of its priority
(``acknowledgement.acknowledge``); policy ``with_order`` or ``without_order`` (device or gateway
offline, a fire panel's communication loss: alarms that open no order). ``advance`` takes
the due timers (``FOR UPDATE SKIP LOCKED``) and runs the pure engine (``ack_sla``): each
escalation or reminder is an ``alarm_events`` row, an ``alarm.escalated`` /
``alarm.renotified`` event in the outbox (so MQTT and the live stream see it), an
``audit_log`` row and a loud notification (SMS, then a voice call unless acknowledged in
time). The timer of an alarm acknowledged, returned to normal, suppressed or out of service
stops (``adopt`` re-arms it if the alarm is unacknowledged and annunciated again); a shelved
one looks again when its shelf runs out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from facility.alarm_store import add_event, message
from facility.events import record
from facility.messages import AlarmEvent
from rules.dispatch.ack_sla import AckClock, AckEscalate, AckRenotify, evaluate_ack
from rules.dispatch.channels import Notice
from rules.dispatch.config import DispatchConfig, Staff
from rules.dispatch.notify import enqueue
from rules.dispatch.orders import Context
from rules.dispatch.roster import assignee, on_call

log = logging.getLogger(__name__)
ACTOR = "dispatch"
ADOPT_WINDOW = timedelta(days=1)

_CANDIDATES = """
SELECT a.id, a.priority, a.raised_at, w.procedure_id, a.work_order_id IS NOT NULL
FROM alarms a LEFT JOIN work_orders w ON w.id = a.work_order_id
WHERE a.site_id = %(site)s AND a.state = 'unack' AND a.active AND NOT a.suppressed
  AND NOT a.out_of_service AND (a.shelved_until IS NULL OR a.shelved_until <= %(now)s)
  AND a.raised_at > %(since)s
  AND NOT EXISTS (SELECT 1 FROM alarm_timers t WHERE t.alarm_id = a.id)
ORDER BY a.id LIMIT %(limit)s
"""
_ALARM = """
SELECT id, state, source, alarm_type, priority, message, work_order_id, suppressed,
       out_of_service, shelved_until, raised_at
FROM alarms WHERE id = %s
"""


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    state: str
    source: str
    alarm_type: str
    priority: str
    message: str
    work_order_id: int | None
    suppressed: bool
    out_of_service: bool
    shelved_until: datetime | None
    raised_at: datetime


def ack_seconds(ctx: Context, priority: str, procedure_id: str | None) -> float:
    procedure = ctx.procedures.get(procedure_id or "")
    if procedure is not None:
        return procedure.sla.acknowledge_s
    return ctx.dispatch.config.acknowledgement.for_priority(priority)


_REARM = """
UPDATE alarm_timers t SET due_at = GREATEST(%(now)s, a.shelved_until), updated_at = %(now)s
FROM alarms a
WHERE a.id = t.alarm_id AND t.site_id = %(site)s AND t.due_at IS NULL AND a.state = 'unack'
  AND a.active AND a.acked_at IS NULL AND NOT a.suppressed AND NOT a.out_of_service
"""


async def adopt(conn: psycopg.AsyncConnection[Any], ctx: Context, now: datetime,
                limit: int = 100) -> int:
    """Start the timers of new unacknowledged alarms, and re-arm the stopped timer of an
    alarm unacknowledged and annunciated again (returned to normal unacknowledged, then
    back; released from suppression or service), due at once or when its shelf runs out: it
goes on from the level it had reached.
    Returns how many timers were started."""
    if not ctx.dispatch.config.acknowledgement.enabled:
        return 0
    await conn.execute(_REARM, {"site": ctx.site_id, "now": now})
    cur = await conn.execute(_CANDIDATES, {"site": ctx.site_id, "now": now,
                                           "since": now - ADOPT_WINDOW, "limit": limit})
    rows = await cur.fetchall()
    for alarm_id, priority, raised_at, procedure_id, has_order in rows:
        ack_due = raised_at + timedelta(seconds=ack_seconds(ctx, priority, procedure_id))
        await conn.execute(
            "INSERT INTO alarm_timers (alarm_id, site_id, policy, ack_due_at, due_at,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (alarm_id, ctx.site_id, "with_order" if has_order else "without_order",
             ack_due, ack_due, now))
    return len(rows)


async def advance(conn: psycopg.AsyncConnection[Any], ctx: Context, now: datetime,
                  limit: int = 100) -> list[AlarmEvent]:
    """Advance every due alarm timer of the site; returns the events to publish."""
    cur = await conn.execute(
        "SELECT alarm_id, policy, ack_due_at, level, renotified, notified FROM alarm_timers"
        " WHERE site_id = %s AND due_at <= %s ORDER BY due_at LIMIT %s"
        " FOR UPDATE SKIP LOCKED", (ctx.site_id, now, limit))
    events: list[AlarmEvent] = []
    for alarm_id, policy_name, ack_due_at, level, renotified, notified in await cur.fetchall():
        row = await (await conn.execute(_ALARM, (alarm_id,))).fetchone()
        if row is None:
            continue
        alarm = Alarm(*row)
        events += await _advance_one(conn, ctx, alarm, policy_name,
                                     AckClock(alarm_id, ack_due_at, level, renotified),
                                     list(notified), now)
    return events


async def _advance_one(conn: psycopg.AsyncConnection[Any], ctx: Context, alarm: Alarm,
                       policy_name: str, clock: AckClock, notified: list[str], now: datetime
                       ) -> list[AlarmEvent]:
    if alarm.shelved_until is not None and alarm.shelved_until > now:
        await _set_due(conn, alarm.id, alarm.shelved_until, now)  # look again after the shelf
        return []
    ack = ctx.dispatch.config.acknowledgement
    policy = getattr(ack, policy_name)
    done = alarm.state != "unack" or alarm.suppressed or alarm.out_of_service
    decision = evaluate_ack(clock, policy, done, now)
    events = [await _act(conn, ctx, alarm, policy_name, act, notified, now)
              for act in decision.actions]
    c = decision.clock
    await conn.execute(
        "UPDATE alarm_timers SET level = %s, renotified = %s, notified = %s, due_at = %s,"
        " overdue_at = COALESCE(overdue_at, CASE WHEN %s > 0 THEN ack_due_at END),"
        " updated_at = %s WHERE alarm_id = %s",
        (c.level, c.renotified, notified, decision.due_at, c.level, now, alarm.id))
    return events


async def _set_due(conn: psycopg.AsyncConnection[Any], alarm_id: int, due: datetime | None,
                   now: datetime) -> None:
    await conn.execute("UPDATE alarm_timers SET due_at = %s, updated_at = %s"
                       " WHERE alarm_id = %s", (due, now, alarm_id))


def who(cfg: DispatchConfig, notify: str, now: datetime) -> str | None:
    """The person a level names: ``next`` is the acknowledging roster's second person on call
    (the first is the one who did not answer), else its first, else the supervisor."""
    if notify == "next":
        people = on_call(cfg, cfg.acknowledgement.roster, now)
        if people:
            return people[1 if len(people) > 1 else 0].username
        notify = "supervisor"
    roster = cfg.escalation.supervisor_role if notify == "supervisor" else notify
    oc = assignee(cfg, roster, now)
    return oc.username if oc else None


async def _act(conn: psycopg.AsyncConnection[Any], ctx: Context, alarm: Alarm, policy: str,
               act: AckEscalate | AckRenotify, notified: list[str], now: datetime
               ) -> AlarmEvent:
    cfg = ctx.dispatch.config
    overdue_s = round((now - alarm.raised_at).total_seconds())
    if isinstance(act, AckEscalate):
        person = who(cfg, act.notify, now)
        name = "escalated"
        detail: dict[str, Any] = {"level": act.level, "notify": act.notify, "person": person,
                                  "policy": policy, "deadline": act.deadline.isoformat(),
                                  "unacknowledged_s": overdue_s}
        people = ctx.people(person)
        if person and person not in notified:
            notified.append(person)
        log.warning("alarm %d (%s %s) not acknowledged in time: escalated to level %d (%s ->"
                    " %s)", alarm.id, alarm.source, alarm.alarm_type, act.level, act.notify,
                    person or "nobody on call")
    else:
        name = "renotified"
        people = ctx.people(*notified)
        detail = {"count": act.count, "people": list(notified), "policy": policy,
                  "unacknowledged_s": overdue_s}
    await add_event(conn, alarm.id, name, ACTOR, now, detail)
    ev = message(f"alarm.{name}", now, alarm_id=alarm.id, source=alarm.source,
                 alarm_type=alarm.alarm_type, state=alarm.state, priority=alarm.priority,
                 work_order_id=alarm.work_order_id, detail=detail)
    await record(conn, ctx.site_id, [ev])
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, outcome, detail)"
        " VALUES (%s, %s, %s, %s, 'success', %s)",
        (now, ACTOR, f"alarm.{name}", f"alarm:{alarm.id}", Jsonb(detail)))
    await enqueue(conn, cfg, _notice(ctx, alarm, f"alarm_{name}", people, now, detail),
                  ctx.channels(cfg.acknowledgement.roster), cancel_when="alarm_acknowledged")
    return ev


def _notice(ctx: Context, alarm: Alarm, event: str, people: tuple[Staff, ...], now: datetime,
            detail: dict[str, Any]) -> Notice:
    title = alarm.message or alarm.alarm_type
    line = (f"未确认 unacknowledged {detail['unacknowledged_s']} s; "
            f"{detail.get('notify', 'reminder')}")
    return Notice(event, ctx.site_id, alarm.work_order_id, f"{title}: {alarm.source}",
                  alarm.source, alarm.priority, alarm.state, now, people, line,
                  alarm_id=alarm.id)
