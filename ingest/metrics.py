"""Ingest's counters in the Prometheus text exposition format (version 0.0.4), served on a
local port by facility.metrics_http. ``render`` is pure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from facility.metrics_http import CONTENT_TYPE, MetricsServer, escape, label_text
from ingest.counters import Counters, Histogram

__all__ = ["CONTENT_TYPE", "render", "serve_metrics"]

_COUNTERS = (
    ("messages_in", "ingest_messages_received_total", "MQTT messages received"),
    ("rows_written", "ingest_rows_written_total", "rows committed (telemetry and statuses)"),
    ("batches", "ingest_batches_total", "batches committed"),
    ("dead_letters", "ingest_dead_letters_total", "messages refused (all kinds)"),
    ("redelivered", "ingest_redeliveries_total",
     "deliveries the broker flagged as possible duplicates (DUP)"),
    ("redeliveries_ignored", "ingest_duplicate_rows_total",
     "telemetry rows already stored, ignored (redeliveries, replays)"),
    ("staged_batches", "ingest_staged_batches_total",
     "batches written through the staging table after a conflict"),
    ("status_events", "ingest_device_status_events_total", "device online-state changes"),
    ("seq_gaps", "ingest_sequence_gaps_total",
     "telemetry seq numbers never received within the grace period (loss upstream)"),
    ("seq_duplicates", "ingest_sequence_duplicates_total", "telemetry seq numbers seen twice"),
)


def render(c: Counters, labels: dict[str, str]) -> str:
    lab = label_text(labels)
    out: list[str] = []
    for attr, name, help_text in _COUNTERS:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter",
                f"{name}{{{lab}}} {getattr(c, attr)}"]
    name = "ingest_dead_letters_by_reason_total"
    out += [f"# HELP {name} messages refused, by reason kind", f"# TYPE {name} counter"]
    for kind, n in sorted(c.dead_letters_by_kind.items()):
        out.append(f'{name}{{{lab}{"," if lab else ""}reason="{escape(kind)}"}} {n}')
    out += ["# HELP ingest_pending_messages received and not yet committed",
            "# TYPE ingest_pending_messages gauge", f"ingest_pending_messages{{{lab}}} {c.pending}",
            "# HELP ingest_lag_seconds ingest clock minus the newest ts of the last batch",
            "# TYPE ingest_lag_seconds gauge", f"ingest_lag_seconds{{{lab}}} {c.lag_s:.3f}"]
    out += _histogram("ingest_batch_latency_seconds",
                      "first message of a batch received -> batch committed",
                      c.batch_latency, lab)
    out += _histogram("ingest_write_seconds", "database write of one batch",
                      c.write_latency, lab)
    return "\n".join(out) + "\n"


def _histogram(name: str, help_text: str, h: Histogram, lab: str) -> list[str]:
    sep = "," if lab else ""
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    cumulated = 0
    for bound, n in zip((*h.bounds, float("inf")), h.counts, strict=True):
        cumulated += n
        le = "+Inf" if bound == float("inf") else repr(bound)
        out.append(f'{name}_bucket{{{lab}{sep}le="{le}"}} {cumulated}')
    out += [f"{name}_sum{{{lab}}} {h.total:.6f}", f"{name}_count{{{lab}}} {h.n}"]
    return out


async def serve_metrics(host: str, port: int, body: Callable[[], str],
                        started: asyncio.Event | None = None) -> None:
    """Serve ``GET /metrics`` until cancelled; anything else is 404."""
    server = MetricsServer(body, port, host)
    await server.start()
    if started is not None:
        started.set()
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await server.close()
