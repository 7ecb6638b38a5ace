from __future__ import annotations

from gateway.buffer import Outgoing
from gateway.counters import GatewayCounters
from gateway.forwarder import replay_payload
from gateway.metrics import Gauges, render


def test_prometheus_text_has_every_series_with_labels() -> None:
    c = GatewayCounters(polls=7, overruns=2, dropped=3)
    c.failures["timeout"] += 4
    c.device("a").polls = 5
    c.device("a").requests = 3
    c.device("b").requests = 2
    text = render("gw-1", c, Gauges(queue_depth=11, inflight=1, devices=2))
    lines = set(text.splitlines())
    assert 'gateway_polls_total{gateway="gw-1"} 7' in lines
    assert 'gateway_poll_failures_total{gateway="gw-1",class="timeout"} 4' in lines
    assert 'gateway_overruns_total{gateway="gw-1"} 2' in lines
    assert 'gateway_dropped_total{gateway="gw-1"} 3' in lines
    assert 'gateway_queue_depth{gateway="gw-1"} 11' in lines
    assert 'gateway_requests_per_cycle{gateway="gw-1"} 5' in lines
    assert 'gateway_device_polls_total{gateway="gw-1",device="a"} 5' in lines
    assert "# TYPE gateway_queue_depth gauge" in lines
    assert text.endswith("\n")


def test_rtu_lines_have_their_own_series() -> None:
    c = GatewayCounters()
    assert "gateway_line_" not in render("gw-1", c, Gauges(0, 0, 0))  # no lines: none
    line = c.line("rs485-1")
    line.requests, line.timeouts, line.load, line.saturated = 40, 3, 1.25, True
    lines = set(render("gw-1", c, Gauges(0, 0, 1)).splitlines())
    assert 'gateway_line_requests_total{gateway="gw-1",line="rs485-1"} 40' in lines
    assert 'gateway_line_timeouts_total{gateway="gw-1",line="rs485-1"} 3' in lines
    assert 'gateway_line_load{gateway="gw-1",line="rs485-1"} 1.25' in lines
    assert 'gateway_line_saturated{gateway="gw-1",line="rs485-1"} 1' in lines


def test_replayed_telemetry_is_flagged_historical_and_otherwise_unchanged() -> None:
    payload = b'{"ts":"2026-01-01T00:00:00.000Z","seq":7,"session":"s","points":{"a":1}}'
    out = replay_payload(Outgoing("t", payload, telemetry=True))
    assert out == (b'{"ts":"2026-01-01T00:00:00.000Z","seq":7,"session":"s","points":{"a":1},'
                   b'"historical":true}')
    status = b'{"ts":"2026-01-01T00:00:00.000Z","state":"offline"}'
    assert replay_payload(Outgoing("t", status, retain=True, critical=True)) == status
