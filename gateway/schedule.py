"""Which poll classes of a device are due at each tick; pure, no I/O, no clock.

A device ticks every ``poll_interval_s``. Each point has a poll class (``fast``, ``normal``,
``slow``) whose period is a whole number of ticks (``PollClasses``: by default 1, 5 and
60). A device's ``phase`` (its index among the gateway's devices) shifts its normal and
slow reads so that devices do not all read their slow points on the same tick. When the
publisher's report period is up, the tick reads every point, so that a full snapshot only
ever carries values read at its ``ts``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CLASSES = ("fast", "normal", "slow")


@dataclass(frozen=True, slots=True)
class Schedule:
    every: Mapping[str, int]  # ticks per class
    present: frozenset[str]  # classes the device has points in
    phase: int = 0

    @classmethod
    def of(cls, poll_classes: Iterable[str], every: Mapping[str, int], phase: int = 0
           ) -> Schedule:
        present = frozenset(poll_classes)
        unknown = present - set(every)
        if unknown:
            raise ValueError(f"no period for poll classes {sorted(unknown)}")
        return cls(dict(every), present, phase)

    def due(self, tick: int, *, snapshot: bool = False) -> frozenset[str]:
        """The classes to read at ``tick`` (every present class when a snapshot is due)."""
        if tick == 0 or snapshot:
            return self.present
        return frozenset(c for c in self.present if (tick + self.phase) % self.every[c] == 0)
