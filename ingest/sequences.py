"""Sequence checking of telemetry: ``seq`` increases by one per message within a gateway
session (DESIGN.md), so a seq that never arrives reveals loss upstream (gateway buffer
overflow, a broker dropping QoS 0, a misconfigured bridge) and one that arrives twice is
a duplicate delivery. Pure: the caller passes the clock reading; no I/O.

A hole is counted as a gap only once it has stayed open for ``grace_s`` (messages of one
gateway may arrive out of order, e.g. a historical replay beside live data). Memory is
bounded: at most ``max_holes`` open holes per session (a larger jump is counted at once)
and ``max_sessions`` sessions (the least recently seen is forgotten). The check sees what
this ingest process receives: with several processes in a share group each sees part of
every gateway's sequence and would count the others' messages as gaps, so run them with
the check off (``facility ingest --no-seq-check``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Session:
    high: int
    holes: dict[int, float] = field(default_factory=dict)


@dataclass(slots=True)
class SequenceTracker:
    grace_s: float = 30.0
    max_holes: int = 10_000
    max_sessions: int = 10_000
    gaps: int = 0
    duplicates: int = 0
    late: int = 0  # arrived after a later seq, within the grace period
    _sessions: OrderedDict[tuple[str, str], _Session] = field(default_factory=OrderedDict)

    def observe(self, gateway: str, session: str, seq: int, now_s: float) -> None:
        key = (gateway, session)
        s = self._sessions.get(key)
        if s is None:
            self._sessions[key] = _Session(seq)
            if len(self._sessions) > self.max_sessions:
                self._forget_oldest()
            return
        self._sessions.move_to_end(key)
        if seq == s.high + 1:
            s.high = seq
        elif seq > s.high:
            missing = seq - s.high - 1
            if missing + len(s.holes) > self.max_holes:
                self.gaps += missing
            else:
                s.holes.update(dict.fromkeys(range(s.high + 1, seq), now_s))
            s.high = seq
        elif s.holes.pop(seq, None) is not None:
            self.late += 1
        else:
            self.duplicates += 1

    def expire(self, now_s: float) -> int:
        """Count the holes open longer than the grace period as gaps; the number counted."""
        counted = 0
        limit = now_s - self.grace_s
        for s in self._sessions.values():
            if s.holes:
                old = [k for k, t in s.holes.items() if t <= limit]
                for k in old:
                    del s.holes[k]
                counted += len(old)
        self.gaps += counted
        return counted

    @property
    def open_holes(self) -> int:
        return sum(len(s.holes) for s in self._sessions.values())

    def _forget_oldest(self) -> None:
        _, s = self._sessions.popitem(last=False)
        self.gaps += len(s.holes)
