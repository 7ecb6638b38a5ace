"""What an operator needs to see of a running gateway, as plain counters (a Prometheus
endpoint can render them later)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class GatewayCounters:
    polls: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # by class: timeout, transport, ...
    overruns: int = 0  # ticks skipped because the device's last poll still ran
    bad_points: int = 0
    published: int = 0
    publish_failures: int = 0
    publish_waits: int = 0  # times a publish waited for the in-flight window
