"""What an operator needs to see of ingest: counters of messages, rows, dead letters, batches
and redeliveries ignored, and the policy that keeps dead-letter warnings from flooding the log
(one WARNING per reason kind per interval, the rest counted). Pure: the caller passes the
clock reading; no I/O."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class Histogram:
    """A Prometheus-style histogram: counts per upper bound (cumulated when rendered)."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1


@dataclass(slots=True)
class Counters:
    messages_in: int = 0
    rows_written: int = 0
    dead_letters: int = 0
    batches: int = 0
    redeliveries_ignored: int = 0  # telemetry rows already stored (same point and time)
    dead_letters_by_kind: dict[str, int] = field(default_factory=dict)
    redelivered: int = 0  # deliveries the broker flagged as possible duplicates (DUP)
    staged_batches: int = 0  # batches written through the staging table (conflict path)
    status_events: int = 0  # device.status events recorded
    seq_gaps: int = 0
    seq_duplicates: int = 0
    write_retries: int = 0  # batch writes that found the database unreachable, retried
    pending: int = 0  # received, not yet committed (gauge)
    lag_s: float = 0.0  # ingest clock minus the newest ts of the last committed batch (gauge)
    batch_latency: Histogram = field(default_factory=Histogram)  # first receipt -> commit
    write_latency: Histogram = field(default_factory=Histogram)  # database write, one batch

    def snapshot(self) -> dict[str, object]:
        snap = asdict(self)
        snap["dead_letters_by_kind"] = dict(self.dead_letters_by_kind)
        for name in ("pending", "lag_s", "batch_latency", "write_latency"):
            snap.pop(name)
        return snap

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters_by_kind.items()))
        return (f"messages in {self.messages_in}, rows written {self.rows_written}, "
                f"batches {self.batches}, dead letters {self.dead_letters}"
                + (f" ({kinds})" if kinds else "")
                + f", redeliveries ignored {self.redeliveries_ignored}"
                + f", sequence gaps {self.seq_gaps}, duplicates {self.seq_duplicates}")


@dataclass(slots=True)
class WarningLimiter:
    """Says whether a warning of a kind is due: the first one, then one per ``interval_s``;
    ``suppressed`` counts those held back since the last one shown."""

    interval_s: float = 60.0
    _last: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)

    def due(self, kind: str, now_s: float) -> bool:
        last = self._last.get(kind)
        if last is not None and now_s - last < self.interval_s:
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now_s
        return True

    def take_suppressed(self, kind: str) -> int:
        return self.suppressed.pop(kind, 0)
