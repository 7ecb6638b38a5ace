"""Device online/offline state from poll outcomes; pure, no I/O, no clock.

A device goes offline after ``offline_after`` consecutive failed polls and is online again
at the first good one. Before any outcome its state is unknown: the first good poll makes
it online, the ``offline_after``-th failure offline. ``record_*`` return a ``Transition``
exactly when the state changes, so the caller publishes and logs once per change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class Transition:
    state: State
    reason: str
    since_s: float | None  # seconds in the previous state, when known


class DeviceHealth:
    def __init__(self, offline_after: int) -> None:
        if offline_after < 1:
            raise ValueError("offline_after must be at least 1")
        self.offline_after = offline_after
        self.state: State | None = None
        self.failures = 0
        self._changed_at: float | None = None

    def record_success(self, now: float) -> Transition | None:
        self.failures = 0
        if self.state == "online":
            return None
        since = None if self._changed_at is None else now - self._changed_at
        first = self.state is None
        self._set("online", now)
        reason = "first good poll" if first else f"recovered after {since:.0f} s"
        return Transition("online", reason, since)

    def record_failure(self, kind: str, now: float) -> Transition | None:
        self.failures += 1
        if self.state == "offline" or self.failures < self.offline_after:
            return None
        since = None if self._changed_at is None else now - self._changed_at
        self._set("offline", now)
        return Transition("offline", f"{kind} after {self.failures} tries", since)

    def _set(self, state: State, now: float) -> None:
        self.state = state
        self._changed_at = now
