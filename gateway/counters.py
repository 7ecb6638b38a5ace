"""What an operator needs to see of a running gateway, as plain counters; ``gateway.metrics``
renders them in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class DeviceCounters:
    polls: int = 0  # polls started
    failures: int = 0
    overruns: int = 0  # ticks skipped because the previous poll still ran
    requests: int = 0  # protocol requests of the last poll
    last_poll_s: float = 0.0  # duration of the last poll


@dataclass(slots=True)
class LineCounters:
    """One Modbus RTU line."""

    requests: int = 0
    timeouts: int = 0  # requests a unit did not answer in time
    opens: int = 0  # times the port or the device server connection was opened
    load: float = 0.0  # line time its units need per second (> 1: cannot keep up)
    saturated: bool = False


@dataclass(slots=True)
class GatewayCounters:
    polls: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # by class: timeout, transport, ...
    overruns: int = 0  # ticks skipped because the device's last poll still ran
    bad_points: int = 0
    published: int = 0
    publish_failures: int = 0
    publish_waits: int = 0  # times a publish waited for the in-flight window
    queued: int = 0  # messages spooled to the on-disk queue
    dropped: int = 0  # bulk telemetry dropped oldest first at the queue's bound
    replayed: int = 0  # queued messages acknowledged by the broker after replay
    unstored: int = 0  # spooled messages held in memory because the disk refused them
    requests: int = 0  # protocol requests sent (Modbus reads, BACnet RP/RPM)
    busy_retries: int = 0  # Modbus requests retried after exception 6 (busy)
    cov_notifications: int = 0
    cov_failures: int = 0  # BACnet COV subscriptions refused, or renewals that failed
    poll_seconds: float = 0.0  # total time spent in polls
    devices: dict[str, DeviceCounters] = field(default_factory=dict)
    lines: dict[str, LineCounters] = field(default_factory=dict)

    def line(self, line_id: str) -> LineCounters:
        return self.lines.setdefault(line_id, LineCounters())

    def device(self, device_id: str) -> DeviceCounters:
        found = self.devices.get(device_id)
        if found is None:
            found = self.devices[device_id] = DeviceCounters()
        return found
