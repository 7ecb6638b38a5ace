"""Work orders: list and filter, detail with checklist and timeline, a repair request from the
service desk, transitions (accept, arrive, resolve, close, cancel, decline, reopen), assign and
reassign, and ticking checklist steps with a note. The state machine is
facility.workorders (shared with rules/, and recording each change in the event outbox); who
may do which move is api.work_order_policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import Conn, CurrentUser, Fieldworker, Supervisor
from api.errors import ApiError, NotFound
from api.repair_requests import open_request
from api.routes.devices import ID_PATTERN
from api.rows import from_row
from api.scoping import WO_BUILDING, check_device, check_place, check_work_order, scope_of, where
from api.work_order_models import (
    SELECT,
    AssignIn,
    EventOut,
    Priority,
    RepairRequestIn,
    StepIn,
    StepOut,
    Trade,
    TransitionIn,
    WorkOrderDetail,
    WorkOrderOut,
    WorkOrderState,
    order_fields,
)
from api.work_order_policy import OPEN_STATES, step_refusal, transition_refusal
from facility.users import Role, User
from facility.workorders import complete_step, transition

router = APIRouter(tags=["work orders"])
WorkOrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]
StepSeq = Annotated[int, Path(ge=1, le=10_000)]
_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "role or assignee may not"}, 404: {},
    409: {"description": "not allowed from the order's state"},
}

_WHERE = """
WHERE (%(states)s::text[] IS NULL OR w.state = ANY(%(states)s))
  AND (%(assignee)s::text IS NULL OR w.assignee = %(assignee)s)
  AND (%(trade)s::text IS NULL OR w.trade = %(trade)s)
  AND (%(prios)s::text[] IS NULL OR w.priority = ANY(%(prios)s))
  AND (%(site)s::text IS NULL OR w.site_id = %(site)s)
  AND (%(device)s::text IS NULL OR d.name = %(device)s)
  AND (%(building)s::text IS NULL OR d.building = %(building)s)
  AND (%(origins)s::text[] IS NULL OR w.origin = ANY(%(origins)s))
"""
_NEWEST = " ORDER BY w.created_at DESC, w.id DESC LIMIT %(limit)s"
_DUE_FIRST = " ORDER BY w.due_at NULLS LAST, w.id LIMIT %(limit)s"
KINDS: dict[str, list[str]] = {"fault": ["alarm", "request"], "maintenance": ["schedule"]}


async def _detail(conn: psycopg.AsyncConnection[Any], wo_id: int) -> WorkOrderDetail:
    cur = await conn.execute(SELECT + " WHERE w.id = %s", (wo_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("work order", wo_id)
    cur = await conn.execute(
        "SELECT seq, role, action, action_en, time_limit_s, required, done_at, done_by, note,"
        " clock, started_at, due_at, overdue_at"
        " FROM work_order_steps WHERE work_order_id = %s ORDER BY seq", (wo_id,),
    )
    steps = [from_row(StepOut, r) for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT time, event, actor, from_state, to_state, detail FROM work_order_events"
        " WHERE work_order_id = %s ORDER BY time, id", (wo_id,),
    )
    timeline = [from_row(EventOut, r) for r in await cur.fetchall()]
    return WorkOrderDetail.model_validate(
        {**order_fields(row, datetime.now(UTC)), "steps": steps, "events": timeline})


@router.get("/work-orders", response_model=list[WorkOrderOut])
async def list_work_orders(
    conn: Conn,
    user: CurrentUser,
    state: Annotated[list[WorkOrderState] | None, Query()] = None,
    open: Annotated[bool, Query(description="only open, assigned, accepted, on_site")] = False,
    mine: Annotated[bool, Query(description="only orders assigned to me")] = False,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
    trade: Trade | None = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    device: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    building: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    origin: Literal["alarm", "request", "schedule"] | None = None,
    kind: Annotated[Literal["fault", "maintenance"] | None, Query(
        description="fault: opened by an alarm or a request, newest first; maintenance:"
        " planned (schedule), due first")] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[WorkOrderOut]:
    states = list(state or []) + (list(OPEN_STATES) if open else [])
    origins = [origin] if origin else KINDS[kind] if kind else None
    if origin and kind and origin not in KINDS[kind]:
        origins = ["-"]  # nothing is both
    params = {"states": states or None, "assignee": user.username if mine else assignee,
              "trade": trade, "prios": priority, "site": site, "device": device,
              "building": building, "origins": origins, "limit": limit}
    order = _DUE_FIRST if kind == "maintenance" else _NEWEST
    cond, scope_params = where(user, "w.site_id", WO_BUILDING)
    cur = await conn.execute(SELECT + _WHERE + " AND " + cond + order, {**params, **scope_params})
    now = datetime.now(UTC)
    orders = [WorkOrderOut.model_validate(order_fields(r, now)) for r in await cur.fetchall()]
    return [o for o in orders if overdue is None or o.overdue == overdue]


@router.get("/work-orders/{work_order_id}", response_model=WorkOrderDetail,
            responses={404: {}})
async def get_work_order(
    conn: Conn, user: CurrentUser, work_order_id: WorkOrderId
) -> WorkOrderDetail:
    await check_work_order(conn, user, work_order_id)
    return await _detail(conn, work_order_id)


@router.post("/work-orders", response_model=WorkOrderDetail, status_code=201,
             responses={403: {}, 404: {"description": "no such site, device or procedure"}})
async def create_repair_request(
    conn: Conn, user: Supervisor, body: RepairRequestIn
) -> WorkOrderDetail:
    check_place(user, body.site, body.building)
    if body.device is not None:
        await check_device(conn, user, body.device)
    wo_id = await open_request(conn, body, user.username, datetime.now(UTC))
    return await _detail(conn, wo_id)


async def _order_state(conn: psycopg.AsyncConnection[Any], wo_id: int) -> tuple[str, str | None]:
    cur = await conn.execute("SELECT state, assignee FROM work_orders WHERE id = %s", (wo_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("work order", wo_id)
    return str(row[0]), row[1]


def _forbid(reason: str | None) -> None:
    if reason is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, reason)


async def _check_assignee(
    conn: psycopg.AsyncConnection[Any], username: str, wo_id: int
) -> None:
    """An active technician (or admin) whose scope includes the order."""
    cur = await conn.execute(
        "SELECT role FROM users WHERE username = %s AND active", (username,))
    row = await cur.fetchone()
    their_scope = await scope_of(conn, username)
    if row is None or their_scope is None:
        raise ApiError(f"no active user {username} to assign")
    if row[0] not in (Role.TECHNICIAN, Role.ADMIN):
        raise ApiError(f"{username} is a {row[0]}, not a technician")
    cur = await conn.execute(
        "SELECT w.site_id, " + WO_BUILDING + " FROM work_orders w"
        " LEFT JOIN devices d ON d.id = w.device_id WHERE w.id = %s", (wo_id,))
    place = await cur.fetchone()
    if place is not None and not their_scope.sees(place[0], place[1]):
        raise ApiError(f"{username} does not work at {place[0]}")


async def _move(
    conn: psycopg.AsyncConnection[Any], user: User, wo_id: int, to: str, note: str,
    assignee: str | None,
) -> WorkOrderDetail:
    await check_work_order(conn, user, wo_id)
    state, current = await _order_state(conn, wo_id)
    _forbid(transition_refusal(user.role, user.username, state, to, current))
    if assignee is not None:
        await _check_assignee(conn, assignee, wo_id)
    await transition(conn, wo_id, to, user.username, now=datetime.now(UTC),
                     assignee=assignee, note=note)
    return await _detail(conn, wo_id)


@router.post("/work-orders/{work_order_id}/transition", response_model=WorkOrderDetail,
             responses=_REFUSALS)
async def transition_work_order(
    conn: Conn, user: CurrentUser, work_order_id: WorkOrderId, body: TransitionIn
) -> WorkOrderDetail:
    """Accept, arrive (on_site), resolve, close, cancel, decline (back to open), reopen.
    Technicians move their own orders; the duty room and managers dispatch, close, cancel."""
    return await _move(conn, user, work_order_id, body.to, body.note, body.assignee)


@router.post("/work-orders/{work_order_id}/assign", response_model=WorkOrderDetail,
             responses=_REFUSALS)
async def assign_work_order(
    conn: Conn, user: Supervisor, work_order_id: WorkOrderId, body: AssignIn
) -> WorkOrderDetail:
    """Assign an open order, or reassign an assigned one, to a technician."""
    return await _move(conn, user, work_order_id, "assigned", body.note, body.assignee)


@router.post("/work-orders/{work_order_id}/steps/{seq}", response_model=WorkOrderDetail,
             responses=_REFUSALS)
async def tick_step(
    conn: Conn, user: Fieldworker, work_order_id: WorkOrderId, seq: StepSeq,
    body: StepIn | None = None,
) -> WorkOrderDetail:
    """Tick checklist step ``seq`` with an optional note (ticking it again changes nothing)."""
    await check_work_order(conn, user, work_order_id)
    _state, assignee = await _order_state(conn, work_order_id)
    _forbid(step_refusal(user.role, user.username, assignee))
    await complete_step(conn, work_order_id, seq, user.username, now=datetime.now(UTC),
                        note=body.note if body else "")
    return await _detail(conn, work_order_id)
