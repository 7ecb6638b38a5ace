"""Who may move a work order where and tick its steps (api.work_order_policy), and the SLA
deadline shown next for each state: table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.work_order_policy import next_deadline, step_refusal, transition_refusal
from facility.users import Role

T, OP, M, A = Role.TECHNICIAN, Role.OPERATOR, Role.MANAGER, Role.ADMIN


@pytest.mark.parametrize(
    ("role", "from_state", "to_state", "assignee", "allowed"),
    [
        (T, "open", "accepted", None, True),          # takes an unassigned order
        (T, "assigned", "accepted", "tech", True),
        (T, "assigned", "accepted", "other", False),  # somebody else's
        (T, "accepted", "on_site", "tech", True),
        (T, "on_site", "resolved", "tech", True),
        (T, "on_site", "resolved", "other", False),
        (T, "assigned", "open", "tech", True),        # declines
        (T, "open", "assigned", None, False),         # cannot dispatch
        (T, "resolved", "closed", "tech", False),
        (T, "open", "cancelled", None, False),
        (OP, "open", "assigned", None, True),
        (OP, "assigned", "assigned", "tech", True),    # reassigns
        (OP, "resolved", "closed", "tech", True),
        (OP, "open", "cancelled", None, True),
        (OP, "resolved", "on_site", "tech", True),     # reopens
        (OP, "accepted", "on_site", "tech", False),    # arrival is the technician's
        (OP, "assigned", "accepted", "tech", False),
        (OP, "on_site", "resolved", "tech", False),
        (M, "open", "assigned", None, True),
        (M, "on_site", "resolved", "tech", False),
        (A, "on_site", "resolved", "tech", True),
        (A, "assigned", "accepted", "other", True),
    ],
)
def test_transition_refusals(
    role: Role, from_state: str, to_state: str, assignee: str | None, allowed: bool
) -> None:
    reason = transition_refusal(role, "tech", from_state, to_state, assignee)
    assert (reason is None) is allowed, reason
    if reason is not None:
        assert isinstance(reason, str) and reason


@pytest.mark.parametrize(
    ("role", "assignee", "allowed"),
    [(T, "tech", True), (T, "other", False), (T, None, False), (OP, None, True),
     (A, "other", True), (M, "tech", False)],
)
def test_step_refusals(role: Role, assignee: str | None, allowed: bool) -> None:
    assert (step_refusal(role, "tech", assignee) is None) is allowed


def test_next_deadline_follows_the_state() -> None:
    created = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    due = created + timedelta(hours=2)
    accept, arrive = 300.0, 1800.0
    assert next_deadline("open", created, due, accept, arrive) == (
        "accept", created + timedelta(minutes=5))
    assert next_deadline("assigned", created, due, accept, arrive)[0] == "accept"  # type: ignore[index]
    assert next_deadline("accepted", created, due, accept, arrive) == (
        "arrive", created + timedelta(minutes=30))
    assert next_deadline("on_site", created, due, accept, arrive) == ("resolve", due)
    assert next_deadline("resolved", created, due, accept, arrive) is None
    assert next_deadline("closed", created, due, accept, arrive) is None
    # Without a procedure SLA only the resolve deadline is known.
    assert next_deadline("open", created, due, None, None) == ("resolve", due)
    assert next_deadline("open", created, None, None, None) is None
