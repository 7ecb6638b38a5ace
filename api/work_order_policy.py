"""Who may do what to a work order, as a pure table (no I/O), on top of the per-route role
check: technicians work on orders that are theirs (or take an unassigned one), the duty room
and managers dispatch, close, cancel and reopen, the admin may do everything. Also the SLA
deadline that matters next for an order's state."""

from __future__ import annotations

from datetime import datetime, timedelta

from facility.users import Role

TECHNICIAN_MOVES = frozenset({"accepted", "on_site", "resolved", "open"})
DISPATCHER_MOVES = frozenset({"assigned", "closed", "cancelled", "open", "on_site"})
OPEN_STATES = ("open", "assigned", "accepted", "on_site")


def transition_refusal(
    role: Role, username: str, from_state: str, to_state: str, assignee: str | None
) -> str | None:
    """Why this user may not move the order to ``to_state``, or None when they may. (Whether
    the move itself is allowed from ``from_state`` is facility.workorders' business.)"""
    if role is Role.ADMIN:
        return None
    if role is Role.TECHNICIAN:
        if to_state not in TECHNICIAN_MOVES:
            return f"a technician cannot move an order to {to_state}"
        if assignee is None and to_state == "accepted":
            return None
        if assignee != username:
            return f"the order is assigned to {assignee or 'nobody'}, not to you"
        return None
    if role in (Role.OPERATOR, Role.MANAGER):
        if to_state not in DISPATCHER_MOVES:
            return f"only the technician on the order moves it to {to_state}"
        if to_state == "on_site" and from_state != "resolved":
            return "only the technician on the order reports arrival"
        return None
    return f"role {role} cannot change work orders"


def step_refusal(role: Role, username: str, assignee: str | None) -> str | None:
    """Why this user may not tick a checklist step, or None."""
    if role in (Role.ADMIN, Role.OPERATOR):
        return None
    if role is Role.TECHNICIAN and assignee == username:
        return None
    if role is Role.TECHNICIAN:
        return f"the order is assigned to {assignee or 'nobody'}, not to you"
    return f"role {role} cannot tick steps"


def next_deadline(
    state: str, created_at: datetime, due_at: datetime | None,
    accept_s: float | None, arrive_s: float | None,
) -> tuple[str, datetime] | None:
    """('accept' | 'arrive' | 'resolve', when) for an open order; None once resolved."""
    if state in ("open", "assigned") and accept_s is not None:
        return "accept", created_at + timedelta(seconds=accept_s)
    if state == "accepted" and arrive_s is not None:
        return "arrive", created_at + timedelta(seconds=arrive_s)
    if state in OPEN_STATES and due_at is not None:
        return "resolve", due_at
    return None
