"""Alarm-load yardsticks of ISA-18.2 / EEMUA 191 for one site and period, as the report shows
them: alarms per operator per 10 minutes (average and peak), floods (10-minute windows with
more than 10 alarms), chattering alarm points (3 or more raises or repeats within a minute,
and the points the rules flagged chattering: an intermittent signal raised as one alarm that
its repeats update), stale alarms (active for over 24 hours), and the top 10 bad actors. One
operator position per site is assumed. Suppressed and historical alarms are not annunciated
and so do not count towards the load."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

FLOOD_PER_10_MIN = 10
CHATTER_PER_MINUTE = 3
TOP = 10

_ANNUNCIATED = """
SELECT e.time, a.source, a.alarm_type FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id
WHERE a.site_id = %(site)s AND e.time >= %(start)s AND e.time < %(end)s
  AND e.event IN ('raised', 'repeat') AND NOT a.suppressed AND NOT a.historical
"""

# alarms the rules raised (or updated) as chattering: one alarm, however many occurrences
_FLAGGED = """
SELECT a.source, a.alarm_type, count(*) FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id
WHERE a.site_id = %(site)s AND e.time >= %(start)s AND e.time < %(end)s
  AND e.event IN ('raised', 'repeat', 'updated') AND (e.detail->>'chattering')::boolean
  AND NOT a.suppressed AND NOT a.historical
GROUP BY 1, 2 ORDER BY 3 DESC
"""


async def alarm_load(
    conn: psycopg.AsyncConnection[Any], site: str, start: datetime, end: datetime
) -> dict[str, Any]:
    params = {"site": site, "start": start, "end": end, "flood": FLOOD_PER_10_MIN,
              "chatter": CHATTER_PER_MINUTE, "top": TOP}
    cur = await conn.execute(
        "WITH r AS (" + _ANNUNCIATED + "), w AS (SELECT date_bin('10 minutes', time,"
        " '2000-01-01') AS win, count(*) AS n FROM r GROUP BY 1)"
        " SELECT (SELECT count(*) FROM r), (SELECT max(n) FROM w),"
        " (SELECT count(*) FROM w WHERE n > %(flood)s),"
        " (SELECT coalesce(sum(n), 0) FROM w WHERE n > %(flood)s)", params)
    row = await cur.fetchone()
    assert row is not None
    total, peak, floods, in_floods = row
    windows = max(1.0, (end - start).total_seconds() / 600)
    cur = await conn.execute(
        "WITH r AS (" + _ANNUNCIATED + ") SELECT source, alarm_type, count(*) FROM ("
        " SELECT source, alarm_type, count(*) OVER (PARTITION BY source, alarm_type"
        " ORDER BY time RANGE BETWEEN interval '1 minute' PRECEDING AND CURRENT ROW) AS c"
        " FROM r) x WHERE c >= %(chatter)s GROUP BY 1, 2 ORDER BY 3 DESC", params)
    chattering = [{"source": r[0], "alarm_type": r[1], "bursts": r[2]}
                  for r in await cur.fetchall()]
    cur = await conn.execute(_FLAGGED, params)
    seen = {(c["source"], c["alarm_type"]) for c in chattering}
    chattering += [{"source": r[0], "alarm_type": r[1], "bursts": r[2]}
                   for r in await cur.fetchall() if (r[0], r[1]) not in seen]
    cur = await conn.execute(
        "SELECT count(*) FROM alarms WHERE site_id = %(site)s AND raised_at < %(end)s"
        " AND active AND state <> 'normal' AND raised_at < least(%(end)s, now())"
        " - interval '24 hours'", params)
    stale_row = await cur.fetchone()
    cur = await conn.execute(
        "WITH r AS (" + _ANNUNCIATED + ") SELECT source, alarm_type, count(*) FROM r"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT %(top)s", params)
    top = [{"source": r[0], "alarm_type": r[1], "count": r[2]} for r in await cur.fetchall()]
    return {
        "annunciated": total,
        "per_10_min_avg": round(total / windows, 3),
        "per_10_min_peak": peak or 0,
        "floods": floods,
        "flood_share": None if not total else round(in_floods / total, 4),
        "chattering": chattering,
        "stale": stale_row[0] if stale_row else 0,
        "top_bad_actors": top,
    }
