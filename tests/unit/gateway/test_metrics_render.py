from __future__ import annotations

from facility.metrics_http import text
from gateway.buffer import Outgoing
from gateway.counters import GatewayCounters
from gateway.forwarder import replay_payload
from gateway.metrics import Gauges, collect
from tests.unit.facility.test_metrics_http import samples


def test_prometheus_text_has_every_series_with_labels() -> None:
    c = GatewayCounters(polls=7, overruns=2, dropped=3)
    c.failures["timeout"] += 4
    c.device("a").polls = 5
    c.device("a").requests = 3
    c.device("b").requests = 2
    body = text(lambda: collect("gw-1", c, Gauges(queue_depth=11, inflight=1, devices=2)))
    got = samples(body)
    gw = ("gateway", "gw-1")
    assert got[("gateway_polls_total", (gw,))] == 7
    assert got[("gateway_poll_failures_total", (("class", "timeout"), gw))] == 4
    assert got[("gateway_overruns_total", (gw,))] == 2
    assert got[("gateway_dropped_total", (gw,))] == 3
    assert got[("gateway_queue_depth", (gw,))] == 11
    assert got[("gateway_requests_per_cycle", (gw,))] == 5
    assert got[("gateway_device_polls_total", (("device", "a"), gw))] == 5
    assert got[("gateway_device_polls_total", (("device", "b"), gw))] == 0
    assert "# TYPE gateway_queue_depth gauge" in body.splitlines()


def test_rtu_lines_have_their_own_series() -> None:
    c = GatewayCounters()
    assert "gateway_line_" not in text(lambda: collect("gw-1", c, Gauges(0, 0, 0)))  # none
    line = c.line("rs485-1")
    line.requests, line.timeouts, line.load, line.saturated = 40, 3, 1.25, True
    got = samples(text(lambda: collect("gw-1", c, Gauges(0, 0, 1))))
    lab = (("gateway", "gw-1"), ("line", "rs485-1"))
    assert got[("gateway_line_requests_total", lab)] == 40
    assert got[("gateway_line_timeouts_total", lab)] == 3
    assert got[("gateway_line_load", lab)] == 1.25
    assert got[("gateway_line_saturated", lab)] == 1


def test_replayed_telemetry_is_flagged_historical_and_otherwise_unchanged() -> None:
    payload = b'{"ts":"2026-01-01T00:00:00.000Z","seq":7,"session":"s","points":{"a":1}}'
    out = replay_payload(Outgoing("t", payload, telemetry=True))
    assert out == (b'{"ts":"2026-01-01T00:00:00.000Z","seq":7,"session":"s","points":{"a":1},'
                   b'"historical":true}')
    status = b'{"ts":"2026-01-01T00:00:00.000Z","state":"offline"}'
    assert replay_payload(Outgoing("t", status, retain=True, critical=True)) == status
