"""The monthly PDCA review of one site: MTTA, MTTR, SLA compliance (accept, arrive, resolve
against the order's procedure), PM compliance (view pm_compliance), work orders by trade and
by cause, and the alarm-load yardsticks (facility.alarm_metrics). ``month_bounds`` and
``to_csv`` are pure; ``monthly`` reads the database. Orders count in the month they were
created; alarms in the month they were raised; PM occurrences in the month they were due.
Durations are seconds; a rate with nothing to measure is None, not 0."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from api.alarm_load import alarm_load


@dataclass(frozen=True, slots=True)
class Month:
    start: datetime
    end: datetime


def month_bounds(month: str, tz: ZoneInfo) -> Month:
    """[first instant, first instant of the next month) of 'YYYY-MM' in ``tz``."""
    year, mon = (int(p) for p in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=tz)
    return Month(start, end)


def _rate(ok: int | None, measured: int | None) -> float | None:
    return None if not measured else round((ok or 0) / measured, 4)


_ORDERS = """
WITH o AS (
  SELECT w.id, w.trade, w.fault, w.origin, w.state, w.created_at, w.resolved_at, w.due_at,
         (p.body -> 'sla' ->> 'accept_s')::float8 AS accept_s,
         (p.body -> 'sla' ->> 'arrive_s')::float8 AS arrive_s,
         (SELECT min(time) FROM work_order_events e
          WHERE e.work_order_id = w.id AND e.event = 'accepted') AS accepted_at,
         (SELECT min(time) FROM work_order_events e
          WHERE e.work_order_id = w.id AND e.event = 'arrived') AS arrived_at
  FROM work_orders w LEFT JOIN procedures p ON p.id = w.procedure_id
  WHERE w.site_id = %(site)s AND w.created_at >= %(start)s AND w.created_at < %(end)s
)
SELECT {group}, count(*),
  count(*) FILTER (WHERE state IN ('resolved', 'closed')),
  count(*) FILTER (WHERE state = 'cancelled'),
  extract(epoch FROM avg(accepted_at - created_at)),
  extract(epoch FROM avg(resolved_at - created_at)),
  count(*) FILTER (WHERE accepted_at <= created_at + make_interval(secs => accept_s)),
  count(*) FILTER (WHERE accept_s IS NOT NULL AND (accepted_at IS NOT NULL
                   OR now() > created_at + make_interval(secs => accept_s))),
  count(*) FILTER (WHERE arrived_at <= created_at + make_interval(secs => arrive_s)),
  count(*) FILTER (WHERE arrive_s IS NOT NULL AND (arrived_at IS NOT NULL
                   OR now() > created_at + make_interval(secs => arrive_s))),
  count(*) FILTER (WHERE resolved_at <= due_at),
  count(*) FILTER (WHERE due_at IS NOT NULL AND state <> 'cancelled'
                   AND (resolved_at IS NOT NULL OR now() > due_at))
FROM o {group_by}
"""
_ORDER_COLS = ("count", "resolved", "cancelled", "mtta_s", "mttr_s", "accept_ok",
               "accept_measured", "arrive_ok", "arrive_measured", "resolve_ok",
               "resolve_measured")


def _order_stats(row: tuple[Any, ...]) -> dict[str, Any]:
    raw = dict(zip(_ORDER_COLS, row, strict=True))
    return {
        "count": raw["count"], "resolved": raw["resolved"], "cancelled": raw["cancelled"],
        "mtta_s": None if raw["mtta_s"] is None else round(float(raw["mtta_s"]), 1),
        "mttr_s": None if raw["mttr_s"] is None else round(float(raw["mttr_s"]), 1),
        "sla_accept": _rate(raw["accept_ok"], raw["accept_measured"]),
        "sla_arrive": _rate(raw["arrive_ok"], raw["arrive_measured"]),
        "sla_resolve": _rate(raw["resolve_ok"], raw["resolve_measured"]),
    }


async def _orders(
    conn: psycopg.AsyncConnection[Any], params: dict[str, Any], group: str | None
) -> list[tuple[str | None, dict[str, Any]]]:
    query = _ORDERS.format(group=group or "NULL", group_by=f"GROUP BY {group} ORDER BY 2 DESC"
                           if group else "")
    cur = await conn.execute(query, params)
    return [(r[0], _order_stats(tuple(r[1:]))) for r in await cur.fetchall()]


async def _alarm_mtta(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> Any:
    cur = await conn.execute(
        "SELECT count(*), extract(epoch FROM avg(acked_at - raised_at)),"
        " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM alarm_timers t WHERE t.alarm_id = a.id"
        " AND t.overdue_at IS NOT NULL)) FROM alarms a"
        " WHERE site_id = %(site)s AND raised_at >= %(start)s AND raised_at < %(end)s", params)
    row = await cur.fetchone()
    assert row is not None
    return {"alarms": row[0], "mtta_s": None if row[1] is None else round(float(row[1]), 1),
            "ack_overdue": row[2]}


async def _steps(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> dict[str, Any]:
    """Timed steps of the month's orders whose clock ran: late ones are done after their
    time limit, or not done and past it (escalated by dispatch)."""
    cur = await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE s.done_at > s.due_at),"
        " count(*) FILTER (WHERE s.done_at IS NULL AND s.due_at < now())"
        " FROM work_order_steps s JOIN work_orders w ON w.id = s.work_order_id"
        " WHERE w.site_id = %(site)s AND w.created_at >= %(start)s AND w.created_at < %(end)s"
        " AND s.due_at IS NOT NULL AND w.state <> 'cancelled'", params)
    row = await cur.fetchone()
    assert row is not None
    timed, late_done, late_open = row
    return {"timed": timed, "late": late_done + late_open, "late_done": late_done,
            "late_not_done": late_open, "on_time": _rate(timed - late_done - late_open, timed)}


async def _pm(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE on_time), count(*) FILTER (WHERE on_time"
        " IS NOT NULL), count(*) FILTER (WHERE missed) FROM pm_compliance"
        " WHERE site_id = %(site)s AND due_at >= %(start)s AND due_at < %(end)s", params)
    row = await cur.fetchone()
    assert row is not None
    return {"due": row[0], "on_time": row[1], "measured": row[2], "missed": row[3],
            "compliance": _rate(row[1], row[2])}


_DEVICES = """
SELECT source, count(*) AS failures,
  coalesce(sum((SELECT sum(quantity * unit_cost) FROM work_order_parts p
                WHERE p.work_order_id = w.id)), 0) AS parts_cost
FROM work_orders w
WHERE w.site_id = %(site)s AND w.created_at >= %(start)s AND w.created_at < %(end)s
  AND w.origin IN ('alarm', 'request') AND w.state <> 'cancelled'
GROUP BY source ORDER BY 2 DESC, 3 DESC, 1 LIMIT 50
"""


async def _by_device(
    conn: psycopg.AsyncConnection[Any], params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per device: fault orders of the month (a repeat failure is any past the first) and
    the cost of the parts used on them (CNY)."""
    cur = await conn.execute(_DEVICES, params)
    return [{"device": r[0], "failures": r[1], "repeat_failures": max(0, r[1] - 1),
             "parts_cost": float(r[2])} for r in await cur.fetchall()]


async def month_summary(
    conn: psycopg.AsyncConnection[Any], site: str, month: str, tz: ZoneInfo
) -> dict[str, Any]:
    """One month's headline figures, for the 12-month trend (api.report_pdf)."""
    bounds = month_bounds(month, tz)
    params = {"site": site, "start": bounds.start, "end": bounds.end}
    [(_, orders)] = await _orders(conn, params, None)
    alarms = await _alarm_mtta(conn, params)
    return {"month": month, "alarms": alarms["alarms"], "alarm_mtta_s": alarms["mtta_s"],
            "orders": orders["count"], "mtta_s": orders["mtta_s"], "mttr_s": orders["mttr_s"],
            "sla_resolve": orders["sla_resolve"]}


async def monthly(
    conn: psycopg.AsyncConnection[Any], site: str, month: str, tz: ZoneInfo
) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    bounds = month_bounds(month, tz)
    params = {"site": site, "start": bounds.start, "end": bounds.end}
    [(_, totals)] = await _orders(conn, params, None)
    return {
        "site": site, "month": month, "timezone": str(tz),
        "start": bounds.start.isoformat(), "end": bounds.end.isoformat(),
        "work_orders": totals,
        "alarms": await _alarm_mtta(conn, params),
        "by_trade": [{"trade": k, **v} for k, v in await _orders(conn, params, "trade")],
        "by_cause": [{"cause": k, **v} for k, v in await _orders(conn, params, "fault")],
        "by_origin": [{"origin": k, **v} for k, v in await _orders(conn, params, "origin")],
        "pm": await _pm(conn, params),
        "steps": await _steps(conn, params),
        "by_device": await _by_device(conn, params),
        "alarm_load": await alarm_load(conn, site, bounds.start, bounds.end),
    }


def to_csv(report: dict[str, Any]) -> str:
    """One row per figure: section, key, metric, value (a spreadsheet pivots it easily)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["site", "month", "section", "key", "metric", "value"])

    def put(section: str, key: str, values: dict[str, Any]) -> None:
        for metric, value in values.items():
            if not isinstance(value, dict | list):
                writer.writerow([report["site"], report["month"], section, key, metric,
                                 "" if value is None else value])

    put("work_orders", "all", report["work_orders"])
    put("alarms", "all", report["alarms"])
    put("pm", "all", report["pm"])
    put("steps", "all", report.get("steps", {}))
    for section, key in (("by_trade", "trade"), ("by_cause", "cause"), ("by_origin", "origin"),
                         ("by_device", "device")):
        for item in report.get(section, []):
            put(section, str(item[key]), {k: v for k, v in item.items() if k != key})
    load = report["alarm_load"]
    put("alarm_load", "all", load)
    for actor in load.get("top_bad_actors", []):
        put("alarm_load.top_bad_actors", f"{actor['source']}/{actor['alarm_type']}", actor)
    return out.getvalue()
