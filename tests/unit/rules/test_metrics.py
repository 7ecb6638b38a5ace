"""The rules service's Prometheus metric families."""

from __future__ import annotations

from collections import Counter

from facility.metrics_http import text
from rules.metrics import RulesCounters, collect
from tests.unit.facility.test_metrics_http import samples


def test_every_counter_and_gauge_is_exposed_with_its_labels() -> None:
    c = RulesCounters(messages=12, stale=2, dead_letters=1,
                      events=Counter({"alarm.raised": 3, "work_order.created": 2}),
                      database_up=False, pending=7, rule_states=40)
    body = text(lambda: collect(c, {"site": "demo", "client_id": 'rules-"x"'}))
    got = samples(body)
    lab = (("client_id", 'rules-"x"'), ("site", "demo"))
    assert got[("rules_messages_total", lab)] == 12
    assert got[("rules_stale_messages_total", lab)] == 2
    assert got[("rules_dead_letters_total", lab)] == 1
    assert got[("rules_events_total", (*lab[:1], ("event", "alarm.raised"), lab[1]))] == 3
    assert got[("rules_events_total", (*lab[:1], ("event", "work_order.created"), lab[1]))] == 2
    assert got[("rules_database_up", lab)] == 0
    assert got[("rules_pending_messages", lab)] == 7
    assert got[("rules_rule_states", lab)] == 40
    assert "# TYPE rules_events_total counter" in body.splitlines()
    assert "# TYPE rules_database_up gauge" in body.splitlines()


def test_without_labels_the_samples_stand_alone() -> None:
    got = samples(text(lambda: collect(RulesCounters(events=Counter({"alarm.cleared": 1})), {})))
    assert got[("rules_messages_total", ())] == 0
    assert got[("rules_events_total", (("event", "alarm.cleared"),))] == 1
    assert got[("rules_database_up", ())] == 1
