"""Prometheus text-format metrics of a running gateway on a local HTTP port.

``render`` turns the gateway's counters and queue gauges into the exposition format (0.0.4):
polls, failures by class, protocol requests (total and of each device's last poll), poll
time, overruns (skipped ticks), Modbus busy retries, messages published, queued, replayed
and dropped, queue depth and messages in flight, per-device polls, failures and overruns.
``MetricsServer`` (facility.metrics_http) serves it on a local port."""

from __future__ import annotations

from dataclasses import dataclass

from facility.metrics_http import MetricsServer
from gateway.counters import GatewayCounters

__all__ = ["Gauges", "MetricsServer", "render"]


@dataclass(frozen=True, slots=True)
class Gauges:
    queue_depth: int
    inflight: int
    devices: int


def render(gateway_id: str, c: GatewayCounters, g: Gauges) -> str:
    gw = f'gateway="{gateway_id}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{{{gw}{labels}}} {value:g}")

    metric("gateway_polls_total", "counter", "Device polls started.", [("", c.polls)])
    metric("gateway_poll_failures_total", "counter", "Failed polls by error class.",
           [(f',class="{k}"', v) for k, v in sorted(c.failures.items())] or [(',class="none"', 0)])
    metric("gateway_overruns_total", "counter",
           "Poll ticks skipped because the device's previous poll still ran.", [("", c.overruns)])
    metric("gateway_requests_total", "counter", "Protocol requests of successful polls.",
           [("", c.requests)])
    metric("gateway_requests_per_cycle", "gauge",
           "Protocol requests of every device's last poll, summed.",
           [("", sum(d.requests for d in c.devices.values()))])
    metric("gateway_poll_seconds_total", "counter", "Time spent polling.", [("", c.poll_seconds)])
    metric("gateway_poll_seconds_max", "gauge", "Longest last poll of any device.",
           [("", max((d.last_poll_s for d in c.devices.values()), default=0.0))])
    metric("gateway_busy_retries_total", "counter", "Modbus requests retried after 'busy'.",
           [("", c.busy_retries)])
    metric("gateway_bad_points_total", "counter", "Points that could not be read.",
           [("", c.bad_points)])
    metric("gateway_published_total", "counter", "Messages acknowledged by the broker.",
           [("", c.published)])
    metric("gateway_publish_failures_total", "counter", "Publishes refused.",
           [("", c.publish_failures)])
    metric("gateway_queued_total", "counter", "Messages spooled to the on-disk queue.",
           [("", c.queued)])
    metric("gateway_replayed_total", "counter", "Queued messages replayed and acknowledged.",
           [("", c.replayed)])
    metric("gateway_dropped_total", "counter",
           "Bulk telemetry dropped oldest first at the queue's bound.", [("", c.dropped)])
    metric("gateway_unstored_total", "counter",
           "Spooled messages held in memory because the queue file could not be written.",
           [("", c.unstored)])
    metric("gateway_queue_depth", "gauge", "Messages in the on-disk queue.",
           [("", g.queue_depth)])
    metric("gateway_inflight", "gauge", "Live messages awaiting their PUBACK.", [("", g.inflight)])
    metric("gateway_devices", "gauge", "Devices polled.", [("", g.devices)])
    metric("gateway_cov_notifications_total", "counter", "BACnet COV notifications received.",
           [("", c.cov_notifications)])
    per_device = sorted(c.devices.items())
    metric("gateway_device_polls_total", "counter", "Polls per device.",
           [(f',device="{d}"', s.polls) for d, s in per_device])
    metric("gateway_device_failures_total", "counter", "Failed polls per device.",
           [(f',device="{d}"', s.failures) for d, s in per_device])
    metric("gateway_device_overruns_total", "counter", "Skipped ticks per device.",
           [(f',device="{d}"', s.overruns) for d, s in per_device])
    return "\n".join(lines) + "\n"
