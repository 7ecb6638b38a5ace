"""The audit log (table ``audit_log``, migration 0009): sign-ins (success and failure, with the
reason), sign-outs, user administration and cleared sign-in locks, each with who, when, from
which address and on whom. ``record`` writes one row on the caller's connection (inside the
caller's transaction when there is one, so a change and its record commit together);
``record_refusal`` writes a refused sign-in at most once a minute per user name, address and
reason, so a flood of refused attempts cannot flood the log. Admins read it through
GET /api/v1/audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel

Outcome = Literal["success", "failure"]
REFUSAL_COALESCE_S = 60


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    outcome: Outcome
    reason: str | None
    address: str | None
    detail: dict[str, Any]


async def record(
    conn: psycopg.AsyncConnection[Any], *, actor: str | None, action: str,
    target: str | None, outcome: Outcome = "success", reason: str | None = None,
    address: str | None = None, detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, outcome, reason, address, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (actor, action, target, outcome, reason, address, Jsonb(detail or {})))


async def record_refusal(
    conn: psycopg.AsyncConnection[Any], *, target: str, reason: str, address: str,
    detail: dict[str, Any],
) -> None:
    """A sign-in refused without a password check; repeats within a minute are not written."""
    await conn.execute(
        "INSERT INTO audit_log (action, target, outcome, reason, address, detail)"
        " SELECT 'sign_in', %(t)s, 'failure', %(r)s, %(a)s, %(d)s WHERE NOT EXISTS ("
        " SELECT 1 FROM audit_log WHERE target = %(t)s AND action = 'sign_in'"
        " AND reason = %(r)s AND address = %(a)s"
        " AND at > now() - make_interval(secs => %(s)s))",
        {"t": target, "r": reason, "a": address, "d": Jsonb(detail), "s": REFUSAL_COALESCE_S})


async def entries(
    conn: psycopg.AsyncConnection[Any], *, action: str | None, actor: str | None,
    target: str | None, since: datetime | None, before_id: int | None, limit: int,
) -> list[AuditEntry]:
    """Newest first; ``before_id`` pages back."""
    cur = await conn.execute(
        "SELECT id, at, actor, action, target, outcome, reason, address, detail FROM audit_log"
        " WHERE (%(action)s::text IS NULL OR action = %(action)s OR action LIKE %(prefix)s)"
        " AND (%(actor)s::text IS NULL OR actor = %(actor)s)"
        " AND (%(target)s::text IS NULL OR target = %(target)s)"
        " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
        " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"action": action, "prefix": f"{action}.%" if action else None, "actor": actor,
         "target": target, "since": since, "before": before_id, "limit": limit})
    names = ("id", "at", "actor", "action", "target", "outcome", "reason", "address", "detail")
    return [AuditEntry.model_validate(dict(zip(names, r, strict=True)))
            for r in await cur.fetchall()]
