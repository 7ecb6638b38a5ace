"""GET /work-orders (filter by state) and GET /work-orders/{id}: an order with its procedure,
its checklist steps (who ticked each and when) and its timeline of events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.deps import Conn, CurrentUser
from api.errors import NotFound

router = APIRouter(tags=["work orders"])
WorkOrderState = Literal[
    "open", "assigned", "accepted", "on_site", "resolved", "closed", "cancelled"
]
WorkOrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class WorkOrderOut(BaseModel):
    id: int
    site: str
    device: str | None
    source: str
    fault: str
    origin: str
    alarm_id: int | None
    procedure_id: str | None
    procedure_title: str | None
    procedure_title_en: str | None
    title: str
    trade: str
    priority: str
    state: WorkOrderState
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


class StepOut(BaseModel):
    seq: int
    role: str
    action: str
    action_en: str
    time_limit_s: int | None
    required: bool
    done_at: datetime | None
    done_by: str | None
    note: str


class EventOut(BaseModel):
    time: datetime
    event: str
    actor: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any]


class WorkOrderDetail(WorkOrderOut):
    description: str
    steps: list[StepOut]
    events: list[EventOut]


_SELECT = """
SELECT w.id, w.site_id, d.name, w.source, w.fault, w.origin, w.alarm_id, w.procedure_id,
       p.title, p.title_en, w.title, w.trade, w.priority, w.state, w.assignee, w.created_at,
       w.updated_at, w.due_at, w.resolved_at, w.closed_at, w.description
FROM work_orders w
LEFT JOIN devices d ON d.id = w.device_id
LEFT JOIN procedures p ON p.id = w.procedure_id
"""
_FIELDS = tuple(WorkOrderOut.model_fields)


def _order(row: tuple[Any, ...]) -> dict[str, Any]:
    fields = dict(zip(_FIELDS, row[: len(_FIELDS)], strict=True))
    fields["description"] = row[len(_FIELDS)]
    return fields


@router.get("/work-orders", response_model=list[WorkOrderOut])
async def list_work_orders(
    conn: Conn,
    user: CurrentUser,
    state: Annotated[list[WorkOrderState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[WorkOrderOut]:
    cur = await conn.execute(
        _SELECT + " WHERE (%(states)s::text[] IS NULL OR w.state = ANY(%(states)s))"
        " ORDER BY w.created_at DESC, w.id DESC LIMIT %(limit)s",
        {"states": state, "limit": limit},
    )
    return [WorkOrderOut.model_validate(_order(row)) for row in await cur.fetchall()]


@router.get("/work-orders/{work_order_id}", response_model=WorkOrderDetail, responses={404: {}})
async def get_work_order(
    conn: Conn, user: CurrentUser, work_order_id: WorkOrderId
) -> WorkOrderDetail:
    cur = await conn.execute(_SELECT + " WHERE w.id = %s", (work_order_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("work order", work_order_id)
    cur = await conn.execute(
        "SELECT seq, role, action, action_en, time_limit_s, required, done_at, done_by, note"
        " FROM work_order_steps WHERE work_order_id = %s ORDER BY seq",
        (work_order_id,),
    )
    steps = [StepOut.model_validate(dict(zip(StepOut.model_fields, r, strict=True)))
             for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT time, event, actor, from_state, to_state, detail FROM work_order_events"
        " WHERE work_order_id = %s ORDER BY time, id",
        (work_order_id,),
    )
    events = [EventOut.model_validate(dict(zip(EventOut.model_fields, r, strict=True)))
              for r in await cur.fetchall()]
    return WorkOrderDetail.model_validate({**_order(row), "steps": steps, "events": events})
