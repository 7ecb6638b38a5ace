"""SLA timers and escalation on a simulated clock: escalation fires when nobody accepts,
climbs the procedure's chain, re-notifies until someone accepts, and stops when they do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from facility.procedures import load_procedure
from rules.dispatch.config import Escalation
from rules.dispatch.sla import (
    Breach,
    Clock,
    Decision,
    Escalate,
    Level,
    Policy,
    Renotify,
    evaluate,
    policy_for,
)

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 3, 5, 2, 0, tzinfo=UTC)
# accept 5m; chain at 5m, 15m, 30m; arrive 30m; resolve 2h (elevator entrapment's numbers)
POLICY = Policy(accept_s=300, arrive_s=1800, resolve_s=7200, renotify_s=300, chain=(
    Level(300, "engineering_supervisor"), Level(900, "property_manager"),
    Level(1800, "emergency_services")))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Sim:
    """Drives the pure engine the way the scheduler does: only when the timer is due."""

    def __init__(self, policy: Policy = POLICY) -> None:
        self.policy = policy
        self.clock = Clock(1, T0)
        self.due: datetime | None = evaluate(self.clock, policy, "assigned", T0).due_at
        self.log: list[tuple[datetime, object]] = []

    def run_until(self, end: datetime, state: str, step: timedelta = timedelta(seconds=1)
                  ) -> None:
        now = T0
        while now <= end:
            if self.due is not None and now >= self.due:
                d: Decision = evaluate(self.clock, self.policy, state, now)
                self.log += [(now, a) for a in d.actions]
                self.clock, self.due = d.clock, d.due_at
            now += step


def test_escalation_fires_when_nobody_accepts() -> None:
    sim = Sim()
    sim.run_until(at(40), "assigned")
    kinds = [(t, type(a).__name__, getattr(a, "role", getattr(a, "sla", None)))
             for t, a in sim.log]
    assert kinds[:2] == [(at(5), "Breach", "accept"), (at(5), "Escalate",
                                                        "engineering_supervisor")]
    assert (at(15), "Escalate", "property_manager") in kinds
    assert (at(30), "Escalate", "emergency_services") in kinds
    assert (at(30), "Breach", "arrive") in kinds
    # after the chain: a reminder every renotify period (35m), until someone accepts
    assert (at(35), "Renotify", None) in kinds
    escalations = [a for _, a in sim.log if isinstance(a, Escalate)]
    assert [a.level for a in escalations] == [1, 2, 3]


def test_nothing_fires_before_the_accept_sla() -> None:
    d = evaluate(Clock(1, T0), POLICY, "assigned", at(4.99))
    assert d.actions == ()
    assert d.due_at == at(5)


def test_accepting_stops_escalation_but_not_the_arrive_and_resolve_slas() -> None:
    sim = Sim()
    sim.run_until(at(6), "assigned")
    assert sum(isinstance(a, Escalate) for _, a in sim.log) == 1
    sim.log.clear()
    sim.run_until(at(200), "accepted")
    assert [(type(a).__name__, getattr(a, "sla", None)) for _, a in sim.log] == [
        ("Breach", "arrive"), ("Breach", "resolve")]
    assert sim.due is None  # nothing left to watch


def test_resolved_in_time_breaches_nothing_and_stops() -> None:
    d = evaluate(Clock(1, T0), POLICY, "resolved", at(3))
    assert d.actions == () and d.due_at is None


def test_cancelled_order_has_no_timer() -> None:
    d = evaluate(Clock(1, T0, level=1), POLICY, "cancelled", at(100))
    assert d.actions == () and d.due_at is None


def test_a_long_outage_fires_every_level_once_and_coalesces_reminders() -> None:
    d = evaluate(Clock(1, T0), POLICY, "assigned", at(61))
    escalations = [a for a in d.actions if isinstance(a, Escalate)]
    reminders = [a for a in d.actions if isinstance(a, Renotify)]
    assert [a.level for a in escalations] == [1, 2, 3]
    assert len(reminders) == 1 and reminders[0].count == 6  # 35, 40, ..., 60 -> one reminder
    assert d.clock.renotified == 6
    assert d.due_at == at(65)
    again = evaluate(d.clock, POLICY, "assigned", at(62))
    assert again.actions == ()


def test_an_escalation_level_before_the_accept_sla_waits_for_it() -> None:
    policy = Policy(300, 1800, 7200, (Level(60, "boss"),), 300)
    assert evaluate(Clock(1, T0), policy, "open", at(2)).actions == ()
    d = evaluate(Clock(1, T0), policy, "open", at(5))
    assert any(isinstance(a, Escalate) and a.deadline == at(5) for a in d.actions)


def test_breach_is_recorded_once() -> None:
    d = evaluate(Clock(1, T0), POLICY, "accepted", at(31))
    assert d.actions == (Breach("arrive", at(30)),)
    assert evaluate(d.clock, POLICY, "accepted", at(32)).actions == ()


def test_procedure_without_chain_escalates_to_the_default_role() -> None:
    proc = load_procedure(ROOT / "procedures" / "elevator_entrapment.yaml")
    policy = policy_for(proc.model_copy(update={"escalation": ()}),
                        Escalation(default_role="duty_boss"))
    assert policy.chain == (Level(proc.sla.accept_s, "duty_boss"),)
    assert policy.renotify_s == proc.sla.accept_s
    real = policy_for(proc, Escalation())
    assert [lv.role for lv in real.chain] == [e.role for e in proc.escalation]
