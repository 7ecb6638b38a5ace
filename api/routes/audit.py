"""GET /audit, for the admin only: the audit log (api.audit), newest first: sign-ins (success
and failure with the reason: bad_credentials, delayed, locked), sign-outs, user administration
(user.create, user.role, user.password, user.deactivate, user.activate, user.update) and
cleared sign-in locks. ``action=user`` matches every ``user.*`` action."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api import audit
from api.deps import Admin, Conn

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[audit.AuditEntry])
async def read_audit(
    conn: Conn, user: Admin,
    action: Annotated[str | None, Query(pattern=r"^[a-z_.]{1,40}$")] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    target: Annotated[str | None, Query(max_length=256)] = None,
    since: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[audit.AuditEntry]:
    return await audit.entries(conn, action=action, actor=actor, target=target, since=since,
                               before_id=before_id, limit=limit)
