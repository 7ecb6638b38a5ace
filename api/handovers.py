"""The shift handover log (交接班记录, table ``shift_handovers``, migration 0015): what the
outgoing shift hands over (the open alarms and open work orders of its scope at that moment,
kept with the handover as they were, and its notes), and the next shift's acknowledgement.
``open_items`` reads the open alarms and orders within a user's scope; ``write``,
``acknowledge``, ``find`` and ``one`` are the table's SQL. A handover of one site is seen by
whoever sees part of that site; a handover of the whole centre (no site) only by those who see
every site. No HTTP here (api.routes.handovers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.scoping import WO_BUILDING, where
from facility.scope import Scope
from facility.users import User

MAX_ITEMS = 200


class HandoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,64}$",
                             description="null: the whole centre (needs every site in scope)")
    shift: str = Field(default="", max_length=100, description="e.g. 白班 → 夜班")
    notes: str = Field(default="", max_length=8000)


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class OpenItems(BaseModel):
    open_alarms: list[dict[str, Any]]
    open_orders: list[dict[str, Any]]


class HandoverOut(OpenItems):
    id: int
    site: str | None
    shift: str
    written_by: str
    written_at: datetime
    notes: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str


_ALARMS = """
SELECT json_build_object('id', a.id, 'site', a.site_id, 'building', d.building,
       'source', a.source, 'type', a.alarm_type, 'priority', a.priority, 'state', a.state,
       'message', a.message, 'raised_at', a.raised_at)
FROM alarms a LEFT JOIN devices d ON d.id = a.device_id
WHERE a.state <> 'normal' AND (%(site)s::text IS NULL OR a.site_id = %(site)s) AND {cond}
ORDER BY a.raised_at DESC LIMIT %(limit)s
"""
_ORDERS = """
SELECT json_build_object('id', w.id, 'site', w.site_id, 'building', {building},
       'title', w.title, 'title_en', CASE WHEN starts_with(w.title, p.title)
       AND p.title_en <> '' THEN p.title_en || substr(w.title, length(p.title) + 1) END,
       'priority', w.priority, 'state', w.state, 'assignee', w.assignee,
       'created_at', w.created_at)
FROM work_orders w LEFT JOIN devices d ON d.id = w.device_id
LEFT JOIN procedures p ON p.id = w.procedure_id
WHERE w.state IN ('open', 'assigned', 'accepted', 'on_site')
  AND (%(site)s::text IS NULL OR w.site_id = %(site)s) AND {cond}
ORDER BY w.created_at DESC LIMIT %(limit)s
"""


async def open_items(conn: psycopg.AsyncConnection[Any], user: User,
                     site: str | None) -> OpenItems:
    """The open alarms and orders of ``site`` (or of the whole scope), newest first."""
    cond, params = where(user, "a.site_id", "d.building")
    cur = await conn.execute(_ALARMS.replace("{cond}", cond),
                             {**params, "site": site, "limit": MAX_ITEMS})
    alarms = [r[0] for r in await cur.fetchall()]
    cond, params = where(user, "w.site_id", WO_BUILDING)
    cur = await conn.execute(_ORDERS.replace("{cond}", cond).replace("{building}", WO_BUILDING),
                             {**params, "site": site, "limit": MAX_ITEMS})
    return OpenItems(open_alarms=alarms, open_orders=[r[0] for r in await cur.fetchall()])


_COLS = ("SELECT id, site_id, shift, written_by, written_at, notes, acknowledged_by,"
         " acknowledged_at, ack_note, open_alarms, open_orders FROM shift_handovers")
_FIELDS = ("id", "site", "shift", "written_by", "written_at", "notes", "acknowledged_by",
           "acknowledged_at", "ack_note", "open_alarms", "open_orders")
_VISIBLE = "(%(scope_all)s OR site_id = ANY(%(scope_touch)s::text[]))"


def _out(row: tuple[Any, ...]) -> HandoverOut:
    return HandoverOut.model_validate(dict(zip(_FIELDS, row, strict=True)))


async def write(conn: psycopg.AsyncConnection[Any], user: User, body: HandoverIn) -> int:
    items = await open_items(conn, user, body.site)
    cur = await conn.execute(
        "INSERT INTO shift_handovers (site_id, shift, written_by, open_alarms, open_orders,"
        " notes) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (body.site, body.shift, user.username, Jsonb(items.open_alarms),
         Jsonb(items.open_orders), body.notes))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def one(conn: psycopg.AsyncConnection[Any], scope: Scope,
              handover_id: int) -> HandoverOut | None:
    cur = await conn.execute(_COLS + " WHERE id = %(id)s AND " + _VISIBLE,
                             {**scope.params(), "id": handover_id})
    row = await cur.fetchone()
    return None if row is None else _out(row)


async def acknowledge(conn: psycopg.AsyncConnection[Any], handover_id: int, username: str,
                      note: str) -> bool:
    """False if it was acknowledged already (the first acknowledgement stands)."""
    cur = await conn.execute(
        "UPDATE shift_handovers SET acknowledged_by = %s, acknowledged_at = now(),"
        " ack_note = %s WHERE id = %s AND acknowledged_by IS NULL",
        (username, note, handover_id))
    return cur.rowcount == 1


async def find(conn: psycopg.AsyncConnection[Any], scope: Scope, *, site: str | None,
               text: str | None, since: datetime | None, until: datetime | None,
               unacknowledged: bool, limit: int) -> list[HandoverOut]:
    """Newest first; ``text`` is looked for in the notes, the shift, the names and the open
    alarms' and orders' text."""
    pattern = None if text is None else "%" + text.replace("\\", "\\\\").replace(
        "%", "\\%").replace("_", "\\_") + "%"
    cur = await conn.execute(
        _COLS + " WHERE " + _VISIBLE
        + " AND (%(site)s::text IS NULL OR site_id = %(site)s)"
        " AND (%(q)s::text IS NULL OR notes ILIKE %(q)s OR shift ILIKE %(q)s"
        "      OR written_by ILIKE %(q)s OR acknowledged_by ILIKE %(q)s OR ack_note ILIKE %(q)s"
        "      OR open_alarms::text ILIKE %(q)s OR open_orders::text ILIKE %(q)s)"
        " AND (%(since)s::timestamptz IS NULL OR written_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR written_at < %(until)s)"
        " AND (NOT %(unack)s OR acknowledged_by IS NULL)"
        " ORDER BY written_at DESC, id DESC LIMIT %(limit)s",
        {**scope.params(), "site": site, "q": pattern, "since": since, "until": until,
         "unack": unacknowledged, "limit": limit})
    return [_out(r) for r in await cur.fetchall()]
