"""Prometheus metrics of a running gateway, served on a local HTTP port.

``collect`` turns the gateway's counters and queue gauges into metric families at scrape
time: polls, failures by class, protocol requests (total and of each device's last poll),
poll time, overruns (skipped ticks), Modbus busy retries, messages published, queued,
replayed and dropped, queue depth and messages in flight, per-device polls, failures and
overruns. ``MetricsServer`` (facility.metrics_http) serves it with prometheus_client."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from facility.metrics_http import MetricsServer, counter, counter_by, gauge, gauge_by
from gateway.counters import GatewayCounters

__all__ = ["Gauges", "MetricsServer", "collect"]


@dataclass(frozen=True, slots=True)
class Gauges:
    queue_depth: int
    inflight: int
    devices: int


_COUNTERS = (  # attribute of GatewayCounters, metric name (without _total), help
    ("polls", "gateway_polls", "Device polls started."),
    ("overruns", "gateway_overruns",
     "Poll ticks skipped because the device's previous poll still ran."),
    ("requests", "gateway_requests", "Protocol requests of successful polls."),
    ("poll_seconds", "gateway_poll_seconds", "Time spent polling."),
    ("busy_retries", "gateway_busy_retries", "Modbus requests retried after 'busy'."),
    ("bad_points", "gateway_bad_points", "Points that could not be read."),
    ("published", "gateway_published", "Messages acknowledged by the broker."),
    ("publish_failures", "gateway_publish_failures", "Publishes refused."),
    ("queued", "gateway_queued", "Messages spooled to the on-disk queue."),
    ("replayed", "gateway_replayed", "Queued messages replayed and acknowledged."),
    ("dropped", "gateway_dropped", "Bulk telemetry dropped oldest first at the queue's bound."),
    ("unstored", "gateway_unstored",
     "Spooled messages held in memory because the queue file could not be written."),
    ("cov_notifications", "gateway_cov_notifications", "BACnet COV notifications received."),
    ("cov_failures", "gateway_cov_failures",
     "BACnet COV subscriptions refused or renewals failed (those objects are polled)."),
)


def collect(gateway_id: str, c: GatewayCounters, g: Gauges) -> list[Metric]:
    gw = {"gateway": gateway_id}
    devices = sorted(list(c.devices.items()))
    out: list[Metric] = [counter(name, help_, gw, getattr(c, attr))
                         for attr, name, help_ in _COUNTERS]
    out += [
        counter_by("gateway_poll_failures", "Failed polls by error class.", gw, "class",
                   dict(c.failures) or {"none": 0}),
        gauge("gateway_requests_per_cycle",
              "Protocol requests of every device's last poll, summed.", gw,
              sum(d.requests for _, d in devices)),
        gauge("gateway_poll_seconds_max", "Longest last poll of any device.", gw,
              max((d.last_poll_s for _, d in devices), default=0.0)),
        gauge("gateway_queue_depth", "Messages in the on-disk queue.", gw, g.queue_depth),
        gauge("gateway_inflight", "Live messages awaiting their PUBACK.", gw, g.inflight),
        gauge("gateway_devices", "Devices polled.", gw, g.devices),
        counter_by("gateway_device_polls", "Polls per device.", gw, "device",
                   {d: s.polls for d, s in devices}),
        counter_by("gateway_device_failures", "Failed polls per device.", gw, "device",
                   {d: s.failures for d, s in devices}),
        counter_by("gateway_device_overruns", "Skipped ticks per device.", gw, "device",
                   {d: s.overruns for d, s in devices}),
    ]
    lines = sorted(list(c.lines.items()))
    if lines:
        out += [
            counter_by("gateway_line_requests", "Requests sent on each RTU line.", gw, "line",
                       {n: s.requests for n, s in lines}),
            counter_by("gateway_line_timeouts",
                       "Requests a unit of the RTU line did not answer in time.", gw, "line",
                       {n: s.timeouts for n, s in lines}),
            counter_by("gateway_line_opens",
                       "Times the RTU line's port or device-server connection was opened.", gw,
                       "line", {n: s.opens for n, s in lines}),
            gauge_by("gateway_line_load",
                     "Line time the RTU line's units need per second (over 1: cannot keep up).",
                     gw, "line", {n: s.load for n, s in lines}),
            gauge_by("gateway_line_saturated",
                     "1 while the RTU line cannot keep its units' poll schedule.", gw, "line",
                     {n: int(s.saturated) for n, s in lines}),
        ]
    return out
