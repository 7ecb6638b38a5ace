"""The work-order transition table (pure)."""

from __future__ import annotations

import itertools

import pytest

from facility.workorders import TRANSITIONS, TransitionForbidden, WoState, event_for, next_states


def test_happy_path() -> None:
    path = ["open", "assigned", "accepted", "on_site", "resolved", "closed"]
    events = [event_for(1, a, b) for a, b in itertools.pairwise(path)]
    assert events == ["assigned", "accepted", "arrived", "resolved", "closed"]


@pytest.mark.parametrize("state", ["open", "assigned", "accepted", "on_site"])
def test_cancel_before_resolution(state: str) -> None:
    assert event_for(1, state, "cancelled") == "cancelled"


@pytest.mark.parametrize(("fr", "to"), [
    ("open", "resolved"), ("open", "on_site"), ("accepted", "resolved"),
    ("resolved", "cancelled"), ("closed", "open"), ("cancelled", "open"), ("open", "bogus"),
])
def test_forbidden(fr: str, to: str) -> None:
    with pytest.raises(TransitionForbidden) as err:
        event_for(7, fr, to)
    assert (err.value.work_order_id, err.value.from_state, err.value.to_state) == (7, fr, to)


def test_terminal_states_have_no_way_out() -> None:
    assert next_states("closed") == () and next_states("cancelled") == ()
    assert set(next_states("resolved")) == {"closed", "on_site"}
    assert all(isinstance(a, WoState) and isinstance(b, WoState) for a, b in TRANSITIONS)
