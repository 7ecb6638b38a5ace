"""What an operator needs to see of ingest: counters of messages, rows, dead letters, batches
and redeliveries ignored, and the policy that keeps dead-letter warnings from flooding the log
(one WARNING per reason kind per interval, the rest counted). Pure: the caller passes the
clock reading; no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class Counters:
    messages_in: int = 0
    rows_written: int = 0
    dead_letters: int = 0
    batches: int = 0
    redeliveries_ignored: int = 0  # telemetry rows already stored (same point and time)
    dead_letters_by_kind: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, object]:
        snap = asdict(self)
        snap["dead_letters_by_kind"] = dict(self.dead_letters_by_kind)
        return snap

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters_by_kind.items()))
        return (f"messages in {self.messages_in}, rows written {self.rows_written}, "
                f"batches {self.batches}, dead letters {self.dead_letters}"
                + (f" ({kinds})" if kinds else "")
                + f", redeliveries ignored {self.redeliveries_ignored}")


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
