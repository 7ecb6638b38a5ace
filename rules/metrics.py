"""The rules service's Prometheus text (served by ``facility.metrics_http``); pure.

Counters: messages received, telemetry ignored as stale or duplicate, dead letters, and the
lifecycle events published, by event name (``alarm.raised``, ``alarm.suppressed``,
``work_order.created``, ``work_order.escalated``, ...). Gauges: whether the database is
reachable (0 while messages are held), deliveries received and not yet handled, and the
rule states kept (timers and latched conditions)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from facility.metrics_http import escape, label_text


@dataclass(slots=True)
class RulesCounters:
    messages: int = 0
    stale: int = 0
    dead_letters: int = 0
    events: Counter[str] = field(default_factory=Counter)
    database_up: bool = True
    pending: int = 0
    rule_states: int = 0


def render(c: RulesCounters, labels: dict[str, str]) -> str:
    lab = label_text(labels)
    sep = "," if lab else ""
    out: list[str] = []
    for name, help_text, value in (
        ("rules_messages_total", "MQTT messages received", c.messages),
        ("rules_stale_messages_total",
         "live telemetry ignored: not newer than the device's last (duplicate, out of order)",
         c.stale),
        ("rules_dead_letters_total", "messages refused and kept in dead_letters",
         c.dead_letters),
    ):
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name}{{{lab}}} {value}"]
    name = "rules_events_total"
    out += [f"# HELP {name} alarm and work-order events published, by event",
            f"# TYPE {name} counter"]
    for event, n in sorted(c.events.items()):
        out.append(f'{name}{{{lab}{sep}event="{escape(event)}"}} {n}')
    for name, help_text, gauge in (
        ("rules_database_up", "1 while the database takes writes, 0 while messages are held",
         int(c.database_up)),
        ("rules_pending_messages", "messages received and not yet handled", c.pending),
        ("rules_rule_states", "rule states kept (per source and rule)", c.rule_states),
    ):
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{lab}}} {gauge}"]
    return "\n".join(out) + "\n"
