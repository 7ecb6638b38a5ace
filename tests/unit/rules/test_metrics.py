"""The rules service's Prometheus text."""

from __future__ import annotations

from collections import Counter

from rules.metrics import RulesCounters, render


def test_every_counter_and_gauge_is_rendered_with_its_labels() -> None:
    c = RulesCounters(messages=12, stale=2, dead_letters=1,
                      events=Counter({"alarm.raised": 3, "work_order.created": 2}),
                      database_up=False, pending=7, rule_states=40)
    text = render(c, {"site": "demo", "client_id": 'rules-"x"'})
    lab = 'client_id="rules-\\"x\\"",site="demo"'
    for line in (
        f"rules_messages_total{{{lab}}} 12",
        f"rules_stale_messages_total{{{lab}}} 2",
        f"rules_dead_letters_total{{{lab}}} 1",
        f'rules_events_total{{{lab},event="alarm.raised"}} 3',
        f'rules_events_total{{{lab},event="work_order.created"}} 2',
        f"rules_database_up{{{lab}}} 0",
        f"rules_pending_messages{{{lab}}} 7",
        f"rules_rule_states{{{lab}}} 40",
        "# TYPE rules_events_total counter",
        "# TYPE rules_database_up gauge",
    ):
        assert line in text.splitlines(), line
    assert text.endswith("\n")


def test_no_labels_renders_bare_braces() -> None:
    text = render(RulesCounters(events=Counter({"alarm.cleared": 1})), {})
    assert "rules_messages_total{} 0" in text
    assert 'rules_events_total{event="alarm.cleared"} 1' in text
