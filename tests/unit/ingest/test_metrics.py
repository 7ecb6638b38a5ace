from __future__ import annotations

from ingest.counters import Counters
from ingest.metrics import render


def test_prometheus_text_has_counters_reasons_and_cumulative_histograms() -> None:
    c = Counters(messages_in=10, rows_written=40, dead_letters=2,
                 dead_letters_by_kind={"payload": 2}, seq_gaps=3, pending=5)
    for s in (0.003, 0.2, 30.0):
        c.batch_latency.observe(s)
    text = render(c, {"site": 's"1'})
    lines = text.splitlines()
    assert 'ingest_messages_received_total{site="s\\"1"} 10' in lines
    assert 'ingest_dead_letters_by_reason_total{site="s\\"1",reason="payload"} 2' in lines
    assert 'ingest_sequence_gaps_total{site="s\\"1"} 3' in lines
    assert 'ingest_pending_messages{site="s\\"1"} 5' in lines
    assert 'ingest_batch_latency_seconds_bucket{site="s\\"1",le="0.005"} 1' in lines
    assert 'ingest_batch_latency_seconds_bucket{site="s\\"1",le="0.25"} 2' in lines
    assert 'ingest_batch_latency_seconds_bucket{site="s\\"1",le="+Inf"} 3' in lines
    assert 'ingest_batch_latency_seconds_count{site="s\\"1"} 3' in lines
    assert "# TYPE ingest_rows_written_total counter" in lines
