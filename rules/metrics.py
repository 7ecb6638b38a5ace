"""The rules service's Prometheus metric families (served by ``facility.metrics_http``); pure.

Counters: messages received, telemetry ignored as stale or duplicate, dead letters, and the
lifecycle events published, by event name (``alarm.raised``, ``alarm.suppressed``,
``work_order.created``, ``work_order.escalated``, ...). Gauges: whether the database is
reachable (0 while messages are held), deliveries received and not yet handled, and the
rule states kept (timers and latched conditions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from facility.metrics_http import counter, counter_by, gauge


@dataclass(slots=True)
class RulesCounters:
    messages: int = 0
    stale: int = 0
    dead_letters: int = 0
    events: Counter[str] = field(default_factory=Counter)
    database_up: bool = True
    pending: int = 0
    rule_states: int = 0


def collect(c: RulesCounters, labels: Mapping[str, str]) -> list[Metric]:
    return [
        counter("rules_messages", "MQTT messages received", labels, c.messages),
        counter("rules_stale_messages",
                "live telemetry ignored: not newer than the device's last (duplicate, out of "
                "order)", labels, c.stale),
        counter("rules_dead_letters", "messages refused and kept in dead_letters", labels,
                c.dead_letters),
        counter_by("rules_events", "alarm and work-order events published, by event", labels,
                   "event", c.events),
        gauge("rules_database_up", "1 while the database takes writes, 0 while messages are "
              "held", labels, int(c.database_up)),
        gauge("rules_pending_messages", "messages received and not yet handled", labels,
              c.pending),
        gauge("rules_rule_states", "rule states kept (per source and rule)", labels,
              c.rule_states),
    ]
