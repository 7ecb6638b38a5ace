from __future__ import annotations

from facility.metrics_http import text
from ingest.counters import Counters
from ingest.metrics import collect
from tests.unit.facility.test_metrics_http import samples


def test_prometheus_text_has_counters_reasons_and_cumulative_histograms() -> None:
    c = Counters(messages_in=10, rows_written=40, dead_letters=2,
                 dead_letters_by_kind={"payload": 2}, seq_gaps=3, pending=5)
    for s in (0.003, 0.2, 30.0):
        c.batch_latency.observe(s)
    body = text(lambda: collect(c, {"site": 's"1'}))
    got = samples(body)
    site = ("site", 's"1')
    assert got[("ingest_messages_received_total", (site,))] == 10
    assert got[("ingest_dead_letters_by_reason_total", (("reason", "payload"), site))] == 2
    assert got[("ingest_sequence_gaps_total", (site,))] == 3
    assert got[("ingest_pending_messages", (site,))] == 5
    assert got[("ingest_batch_latency_seconds_bucket", (("le", "0.005"), site))] == 1
    assert got[("ingest_batch_latency_seconds_bucket", (("le", "0.25"), site))] == 2
    assert got[("ingest_batch_latency_seconds_bucket", (("le", "+Inf"), site))] == 3
    assert got[("ingest_batch_latency_seconds_count", (site,))] == 3
    assert abs(got[("ingest_batch_latency_seconds_sum", (site,))] - 30.203) < 1e-9
    assert "# TYPE ingest_rows_written_total counter" in body.splitlines()
