"""Prometheus text-format metrics of a running gateway on a local HTTP port.

``render`` turns the gateway's counters and queue gauges into the exposition format (0.0.4):
polls, failures by class, protocol requests (total and of each device's last poll), poll
time, overruns (skipped ticks), Modbus busy retries, messages published, queued, replayed
and dropped, queue depth and messages in flight, per-device polls, failures and overruns.
``MetricsServer`` is a tiny asyncio HTTP/1.1 server answering ``GET /metrics`` (anything
else: 404) with one response per connection; it binds 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.counters import GatewayCounters

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 5.0


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


class MetricsServer:
    def __init__(self, body: Callable[[], str], port: int, host: str = "127.0.0.1") -> None:
        self._body = body
        self._host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if request.startswith(b"GET ") and path.split(b"?")[0] == b"/metrics":
                status, body = "200 OK", self._body().encode()
            else:
                status, body = "404 Not Found", b"not found\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
                f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
