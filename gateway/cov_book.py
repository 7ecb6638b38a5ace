"""The liveness and COV accounting of one BACnet device; pure, no I/O, the caller passes the
loop time.

A value that came in a COV notification says nothing of whether the device still answers:
a device that died keeps its last notified values for ever. So every poll asks the device
something (``plan``): the objects without a live notified value, and at each integrity poll
(every ``integrity_s``) every due object; when that leaves nothing to ask, one light
request (``Plan.probe``) proves the device answers. The reader fails the poll when the
device does not answer it, so the poller counts it like any failed poll: a device that
stops answering is offline after the same number of polls whether its values come from COV
or not, and a cached value is never published after a poll the device did not answer. When
the device stops answering, ``lost`` forgets every notified value: after it answers again
each object is read by request until a new notification arrives (a device that restarted
has forgotten our subscriptions and would not notify a change).

Subscriptions: ``subscribed`` and ``failed`` keep, per object, whether its subscription
holds and when a failed one may be tried again (capped, jittered exponential backoff from
``retry_first_s``). They return a log line exactly when the device's COV state changes: the
first object whose subscription fails or is refused while all others hold (one warning
names it; more objects failing meanwhile are only counted), and the last one coming back."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from gateway.backoff import Backoff

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Sample:
    """An object's state as notified: its value and status flags (None: not notified yet),
    and while the fault flag is set its reliability as last read by request (None: not
    known; the flag is set exactly when the reliability is not no-fault-detected)."""

    value: object = None
    status_flags: tuple[int, ...] | None = None
    reliability: str | None = None


@dataclass(frozen=True, slots=True)
class Plan(Generic[K]):
    """What one poll does: the objects to read by request, those answered from notified
    values, whether a liveness probe must be sent (nothing else is asked), and whether
    this poll is an integrity poll."""

    ask: tuple[K, ...]
    cached: tuple[K, ...]
    probe: bool
    integrity: bool


class CovBook(Generic[K]):
    def __init__(self, integrity_s: float, retry_first_s: float, retry_max_s: float) -> None:
        if integrity_s <= 0:
            raise ValueError("integrity_s must be positive")
        self.integrity_s = integrity_s
        self._retry = (retry_first_s, max(retry_first_s, retry_max_s))
        self._samples: dict[K, Sample] = {}
        self._reliability: dict[K, str | None] = {}  # as last read by request
        self._failing: dict[K, Backoff] = {}
        self._last_integrity = -math.inf

    @property
    def covered(self) -> frozenset[K]:
        """Objects answered from notified values at the next poll (integrity aside)."""
        return frozenset(k for k, s in self._samples.items() if s.value is not None)

    @property
    def failing(self) -> frozenset[K]:
        return frozenset(self._failing)

    def sample(self, key: K) -> Sample:
        found = self._samples.get(key, Sample())
        flags = found.status_flags
        fault = flags is not None and len(flags) > 1 and bool(flags[1])
        return replace(found, reliability=self._reliability.get(key) if fault else None)

    def plan(self, due: Sequence[K], now: float) -> Plan[K]:
        """What this poll reads (call once per poll: an integrity poll is then booked)."""
        integrity = now - self._last_integrity >= self.integrity_s
        if integrity:
            self._last_integrity = now
        covered = self.covered
        ask = tuple(k for k in due if integrity or k not in covered)
        cached = tuple(k for k in due if k not in ask)
        return Plan(ask=ask, cached=cached, probe=not ask, integrity=integrity)

    def notified(self, key: K, *, value: object = None,
                 status_flags: tuple[int, ...] | None = None) -> None:
        """A notification of an object followed by COV (only live subscriptions notify)."""
        old = self._samples.get(key, Sample())
        if value is not None:
            old = replace(old, value=value)
        if status_flags is not None:
            old = replace(old, status_flags=status_flags)
        self._samples[key] = old

    def read(self, key: K, value: object, status_flags: tuple[int, ...] | None,
             reliability: str | None) -> None:
        """An object read by request: its reliability is remembered, its notified state
        refreshed if it has one (a value read is never taken as notified: only a
        notification proves the subscription holds)."""
        self._reliability[key] = reliability
        if value is not None and self.sample(key).value is not None:
            self._samples[key] = Sample(value, status_flags)

    def unsubscribed(self, key: K) -> None:
        """The object's subscription ended (stopped, failed, lost): poll it."""
        self._samples.pop(key, None)

    def lost(self) -> int:
        """The device did not answer a poll: forget every notified value (how many)."""
        count = len(self.covered)
        self._samples = {k: Sample() for k in self._samples}
        return count

    def subscribed(self, key: K) -> str | None:
        """The object's subscription was accepted; a log line if COV is whole again."""
        self._samples.setdefault(key, Sample())
        if self._failing.pop(key, None) is not None and not self._failing:
            return "COV subscriptions accepted again; values follow notifications"
        return None

    def failed(self, key: K, reason: str, now: float, label: str = ""
               ) -> tuple[float, str | None]:
        """The object's subscription failed or was refused: seconds until it may be tried
        again, and a log line (naming the object by ``label``, else by its key) if this is
        the device's first failing object."""
        self.unsubscribed(key)
        first = not self._failing
        backoff = self._failing.get(key)
        if backoff is None:
            backoff = self._failing[key] = Backoff(*self._retry)
        backoff.failed(now)
        wait = backoff.wait_s(now)
        if not first:
            return wait, None
        return wait, (f"COV subscription of {label or key} failed ({reason}); polling it "
                      f"every poll interval, subscribing again in {wait:.0f} s with backoff")
