"""Capped, jittered exponential backoff after failures in a row: when a connection may be
opened again, or a silent unit asked again. Pure: the caller passes the loop time."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    first_s: float  # the first wait
    max_s: float  # no wait is longer
    jitter: float = 0.5  # each wait is drawn from [jitter, 1] x its step
    free: int = 0  # failures in a row that cost no wait yet
    failures: int = 0
    retry_at: float = 0.0

    def wait_s(self, now: float) -> float:
        """How long until the next try may go (0: now)."""
        return max(0.0, self.retry_at - now)

    def failed(self, now: float) -> None:
        self.failures += 1
        step = self.failures - 1 - self.free
        if step >= 0:
            wait = min(self.max_s, self.first_s * 2 ** step)
            self.retry_at = now + wait * random.uniform(self.jitter, 1.0)

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0
