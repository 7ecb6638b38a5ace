"""The figures of bench/failover.py (not a test): per kill what it cost, per set-up what was
lost, doubled or missed (counted from the auditor's sequence numbers, the database's rows
and outbox events, and the API's alarm list), the lock holders as the database shows them,
the tables and the RESULT line."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

import psycopg

from bench.failover_probes import Burst, DutyRoom
from bench.faults import SITE_ID, Audit, Fault, count_rows, ts_key

log = logging.getLogger("bench.failover")
LOCKS = (f"rules-{SITE_ID}", f"ingest-{SITE_ID}")


@dataclass
class KillRow:
    victim: str
    held: str
    db_s: float = 0.0
    broker_s: float = 0.0
    takeover_s: dict[str, float] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # fault -> delay past on-delay


@dataclass
class PhaseResult:
    name: str
    lost: int = 0
    duplicated: int = 0
    missed: int = 0
    audited: int = 0
    rows: list[KillRow] = field(default_factory=list)
    burst: Burst | None = None

    @property
    def alarm_delay_s_max(self) -> float:
        delays = [d for r in self.rows for d in r.delays.values()]
        return max(delays) if delays else math.nan

    @property
    def points_per_s(self) -> float:
        return self.burst.points_per_s if self.burst and self.burst.complete else 0.0


class LockHolders:
    """Who holds each service lock, as the database says, sampled every 0.5 s."""

    def __init__(self, url: str) -> None:
        self.url = url
        # None: the database could not be asked (its outage counts as the lock not held)
        self.samples: list[tuple[float, dict[str, str] | None]] = []

    async def run(self) -> None:
        sql = ("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
               " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE "
               "'lock %'")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url,
                                                                 connect_timeout=2) as conn:
                    cur = await conn.execute(sql)
                    names = [str(r[0]) for r in await cur.fetchall()]
                self.samples.append((time.monotonic(), {
                    n.split()[1]: n.split(" pid ")[1] for n in names if " pid " in n}))
            except (psycopg.Error, OSError):
                self.samples.append((time.monotonic(), None))
            await asyncio.sleep(0.5)

    def holder(self, lock: str, before: float) -> str | None:
        seen = [h.get(lock) for t, h in self.samples if t <= before and h is not None]
        return seen[-1] if seen else None

    def takeover_s(self, lock: str, killed_at: float, window_s: float = 180.0) -> float:
        """From the kill to the lock held again when it changed hands or was seen free
        (0: held by the same instance throughout; NaN: never held again)."""
        was = self.holder(lock, killed_at)
        if was is None:
            return math.nan
        after = [(t, None if h is None else h.get(lock)) for t, h in self.samples
                 if killed_at < t <= killed_at + window_s]
        gap = False
        for t, h in after:
            if h is None or h != was:
                gap = True
            if gap and h is not None:
                return t - killed_at
        return 0.0 if not gap and after else math.nan


def count(url: str, box: Audit, faults: list[Fault], room: DutyRoom,
          result: PhaseResult) -> None:
    stored = count_rows(url)
    lost_seq = sum(len(set(range(1, max(s) + 1)) - s) for s in box.seqs.values())
    lost_rows = dup_rows = 0
    for (device, ts), n in box.rows.items():
        got = stored.get((device, ts_key(ts)), 0)
        if got != n and lost_rows + dup_rows < 20:
            log.warning("%s at %s: %d rows expected, %d stored", device, ts, n, got)
        lost_rows += got < n
        dup_rows += got > n
    dup_events = 0
    with psycopg.connect(url) as conn:
        for f in faults:
            assert f.start is not None
            for kind, extra in (("alarm.raised", " AND payload->>'alarm_type' = %s"),
                                ("work_order.created", " AND payload->>'alarm_type' = %s")):
                row = conn.execute(
                    "SELECT count(*) FROM events WHERE kind = %s AND payload->>'device' = %s"
                    " AND time >= %s - interval '5 s'" + extra,
                    (kind, f.device, f.start, f.alarm_type)).fetchone()
                dup_events += max(0, (row[0] if row else 0) - 1)
            if room.first_seen(f.device, f.alarm_type, f.start) is None:
                result.missed += 1
                log.warning("missed: %s on %s", f.alarm_type, f.device)
    result.lost, result.duplicated = lost_seq + lost_rows, dup_rows + dup_events
    result.audited = box.messages
    log.info("%s: audited %d messages; seq gaps %d, not stored %d, stored twice %d, "
             "doubled alarm or order events %d", result.name, box.messages, lost_seq,
             lost_rows, dup_rows, dup_events)


def table(result: PhaseResult) -> str:
    head = ("| kill | what it held | db failover s | broker failover s | rules takeover s "
            "| ingest takeover s | alarm delay s (past on-delay) |\n|---|---|---|---|---|---|---|")
    lines = [f"{result.name}:", head]
    for i, r in enumerate(result.rows, 1):
        delays = ", ".join(f"{k} {v:.1f}" for k, v in r.delays.items()) or "none seen"
        lines.append(f"| {i}: {r.victim} | {r.held or '-'} | {r.db_s:.1f} | {r.broker_s:.1f} "
                     f"| {r.takeover_s.get('rules', math.nan):.1f} "
                     f"| {r.takeover_s.get('ingest', math.nan):.1f} | {delays} |")
    return "\n".join(lines)


def report(centre: PhaseResult | None, single: PhaseResult | None) -> None:
    for r in (single, centre):
        if r is not None:
            print(table(r))
            b = r.burst
            if b is not None:
                print(f"{r.name}: burst {b.messages} messages, {b.points} points, "
                      f"acknowledged by the broker in {b.published_s:.1f} s, "
                      f"{b.stored_points} stored in {b.seconds:.1f} s; {r.audited} audited "
                      f"messages: lost {r.lost}, duplicated {r.duplicated}, missed alarms "
                      f"{r.missed}")
    if centre is None:
        centre = PhaseResult("centre (not run)")
    db_s = max((row.db_s for row in centre.rows), default=math.nan)
    broker_s = max((row.broker_s for row in centre.rows), default=math.nan)
    s_delay = single.alarm_delay_s_max if single else math.nan
    s_pps = single.points_per_s if single else math.nan
    # no audited message: nothing was measured (the auditor could not subscribe)
    lost = centre.lost if centre.audited else "unmeasured"
    print(f"RESULT lost={lost} duplicated={centre.duplicated} "
          f"missed_alarms={centre.missed} alarm_delay_s_max={centre.alarm_delay_s_max:.1f} "
          f"db_failover_s={db_s:.1f} broker_failover_s={broker_s:.1f} "
          f"single_machine_alarm_delay_s_max={s_delay:.1f} "
          f"centre_points_per_s={centre.points_per_s:.0f} "
          f"single_machine_points_per_s={s_pps:.0f}")
