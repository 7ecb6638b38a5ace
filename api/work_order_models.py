"""Request and response bodies of the work-order routes (pydantic), and the one SELECT that
reads orders with their procedure's SLA, so that list, detail and the pages agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.work_order_policy import next_deadline

WorkOrderState = Literal[
    "open", "assigned", "accepted", "on_site", "resolved", "closed", "cancelled"
]
Trade = Literal["elevator", "electrical", "plumbing", "fire", "general"]
Priority = Literal["critical", "high", "medium", "low"]
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"
OPEN_STEP_STATES = ("open", "assigned", "accepted", "on_site")  # where step timers matter


class WorkOrderOut(BaseModel):
    id: int
    site: str
    device: str | None
    building: str | None
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
    next_deadline: datetime | None = Field(description="the SLA deadline that matters next")
    next_deadline_kind: Literal["accept", "arrive", "resolve"] | None
    overdue: bool
    steps_total: int
    steps_done: int
    step_due_at: datetime | None = Field(
        default=None, description="the deadline of the next timed step not yet done")
    steps_overdue: int = Field(default=0, description="steps past their time limit, not done")


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
    clock: str = Field(default="accepted", description="its time limit counts from the order"
                       " raised or accepted")
    started_at: datetime | None = None
    due_at: datetime | None = None
    overdue_at: datetime | None = Field(default=None, description="when it was escalated late")


class EventOut(BaseModel):
    time: datetime
    event: str
    actor: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any]


class WorkOrderDetail(WorkOrderOut):
    description: str
    requester: dict[str, Any]
    steps: list[StepOut]
    events: list[EventOut]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepairRequestIn(_Body):
    """An owner's repair request (业主报修) taken by the service desk."""

    site: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    building: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,64}$")
    device: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,64}$")
    location: str = Field(default="", max_length=200, description="unit, floor, room")
    category: str = Field(pattern=r"^[a-z0-9_]{1,40}$", description="e.g. leak, no_power")
    trade: Trade
    priority: Priority = "medium"
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    reporter_name: str = Field(default="", max_length=100)
    reporter_phone: str = Field(default="", max_length=40)
    procedure_id: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,64}$")


class TransitionIn(_Body):
    to: WorkOrderState
    note: str = Field(default="", max_length=2000)
    assignee: str | None = Field(default=None, pattern=USERNAME)


class AssignIn(_Body):
    assignee: str = Field(pattern=USERNAME)
    note: str = Field(default="", max_length=2000)


class StepIn(_Body):
    note: str = Field(default="", max_length=2000)


SELECT = """
SELECT w.id, w.site_id, d.name, d.building, w.source, w.fault, w.origin, w.alarm_id,
       w.procedure_id, p.title, p.title_en, w.title, w.trade, w.priority, w.state, w.assignee,
       w.created_at, w.updated_at, w.due_at, w.resolved_at, w.closed_at,
       (p.body -> 'sla' ->> 'accept_s')::float8, (p.body -> 'sla' ->> 'arrive_s')::float8,
       (SELECT count(*) FROM work_order_steps s WHERE s.work_order_id = w.id),
       (SELECT count(*) FROM work_order_steps s WHERE s.work_order_id = w.id
          AND s.done_at IS NOT NULL),
       w.description, w.requester,
       (SELECT min(s.due_at) FROM work_order_steps s WHERE s.work_order_id = w.id
          AND s.done_at IS NULL),
       (SELECT count(*) FROM work_order_steps s WHERE s.work_order_id = w.id
          AND s.done_at IS NULL AND s.due_at < now())
FROM work_orders w
LEFT JOIN devices d ON d.id = w.device_id
LEFT JOIN procedures p ON p.id = w.procedure_id
"""
_PLAIN = ("id", "site", "device", "building", "source", "fault", "origin", "alarm_id",
          "procedure_id", "procedure_title", "procedure_title_en", "title", "trade",
          "priority", "state", "assignee", "created_at", "updated_at", "due_at",
          "resolved_at", "closed_at")


def order_fields(row: tuple[Any, ...], now: datetime) -> dict[str, Any]:
    """The WorkOrderOut fields of a SELECT row (plus description and requester)."""
    fields = dict(zip(_PLAIN, row[: len(_PLAIN)], strict=True))
    (accept_s, arrive_s, total, done, description, requester, step_due,
     steps_overdue) = row[len(_PLAIN):]
    deadline = next_deadline(fields["state"], fields["created_at"], fields["due_at"],
                             accept_s, arrive_s)
    fields.update(
        next_deadline=deadline[1] if deadline else None,
        next_deadline_kind=deadline[0] if deadline else None,
        overdue=deadline is not None and deadline[1] < now,
        steps_total=total, steps_done=done, description=description,
        step_due_at=step_due if fields["state"] in OPEN_STEP_STATES else None,
        steps_overdue=steps_overdue if fields["state"] in OPEN_STEP_STATES else 0,
        requester=requester or {},
    )
    return fields
