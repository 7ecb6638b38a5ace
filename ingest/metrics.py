"""Ingest's counters as Prometheus metric families, served on a local port by
facility.metrics_http (prometheus_client). ``collect`` is pure: it reads the counters."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from facility.metrics_http import Collect, MetricsServer, counter, counter_by, gauge
from ingest.counters import Counters, Histogram

__all__ = ["collect", "serve_metrics"]

_COUNTERS = (  # attribute of Counters, metric name (without _total), help
    ("messages_in", "ingest_messages_received", "MQTT messages received"),
    ("rows_written", "ingest_rows_written", "rows committed (telemetry and statuses)"),
    ("batches", "ingest_batches", "batches committed"),
    ("dead_letters", "ingest_dead_letters", "messages refused (all kinds)"),
    ("redelivered", "ingest_redeliveries",
     "deliveries the broker flagged as possible duplicates (DUP)"),
    ("redeliveries_ignored", "ingest_duplicate_rows",
     "telemetry rows already stored, ignored (redeliveries, replays)"),
    ("staged_batches", "ingest_staged_batches",
     "batches written through the staging table after a conflict"),
    ("status_events", "ingest_device_status_events", "device online-state changes"),
    ("seq_gaps", "ingest_sequence_gaps",
     "telemetry seq numbers never received within the grace period (loss upstream)"),
    ("seq_duplicates", "ingest_sequence_duplicates", "telemetry seq numbers seen twice"),
    ("write_retries", "ingest_write_retries",
     "batch writes that found the database unreachable and were retried"),
)


def collect(c: Counters, labels: Mapping[str, str]) -> list[Metric]:
    out: list[Metric] = [counter(name, help_, labels, getattr(c, attr))
                         for attr, name, help_ in _COUNTERS]
    out += [
        counter_by("ingest_dead_letters_by_reason", "messages refused, by reason kind",
                   labels, "reason", c.dead_letters_by_kind),
        gauge("ingest_pending_messages", "received and not yet committed", labels, c.pending),
        gauge("ingest_lag_seconds", "ingest clock minus the newest ts of the last batch",
              labels, c.lag_s),
        _histogram("ingest_batch_latency_seconds",
                   "first message of a batch received -> batch committed",
                   c.batch_latency, labels),
        _histogram("ingest_write_seconds", "database write of one batch",
                   c.write_latency, labels),
    ]
    return out


def _histogram(name: str, help_text: str, h: Histogram,
               labels: Mapping[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=list(labels))
    buckets: list[tuple[str, float]] = []
    cumulated = 0
    for bound, n in zip((*h.bounds, float("inf")), list(h.counts), strict=True):
        cumulated += n
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulated))
    family.add_metric(list(labels.values()), buckets, sum_value=h.total)
    return family


async def serve_metrics(host: str, port: int, collect: Collect,
                        started: asyncio.Event | None = None) -> None:
    """Serve ``GET /metrics`` until cancelled."""
    server = MetricsServer(collect, port, host)
    await server.start()
    if started is not None:
        started.set()
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await server.close()
