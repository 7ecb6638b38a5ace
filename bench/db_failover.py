"""Database failover benchmark (not a test; root; starts everything itself in namespaces).

Three machines (network namespaces on a private bridge, stack/centre/machines.py) carry a
three-member etcd and three Patroni-managed PostgreSQL 15 nodes in synchronous mode, with
an HAProxy on each; a fourth machine ("client") runs an HAProxy of its own and three
writers, each a process inserting numbered rows (one autocommit INSERT at a time, ON
CONFLICT DO NOTHING, so a retry of an unknown outcome stays single):

- ``multihost``: facility.db.connect on the libpq multi-host URL with
  ``target_session_attrs=read-write`` (connect_timeout 3 s, keepalives, tcp_user_timeout);
- ``haproxy``: the same module through the client machine's HAProxy (GET /primary checks);
- ``naive`` (the baseline): plain psycopg on the multi-host URL, no timeouts or keepalives.

Then ``--runs`` times: the leader's machine is killed the hard way (link cut, every process
SIGKILLed), the time to the new leader accepting writes is taken (``db_failover_s``) and
each writer's time from the kill to its first acknowledged write after it; the old machine
is revived and its node rejoins before the next run. At the end every acknowledged row is
looked for on the last primary (``lost``). Last, the synchronous standby's machine is killed
and the multi-host writer's longest pause between two acknowledged writes is taken
(``standby_kill_write_pause_s``).

``--ttl``, ``--loop-wait``, ``--retry-timeout`` set Patroni's timings (10, 2, 4 by default,
as ``facility centre-config`` writes them). Ends with ``RESULT db_failover_s=...
multihost_first_write_s=... haproxy_first_write_s=... naive_first_write_s=...
standby_kill_write_pause_s=... lost=...``
(medians over the runs; the naive writer is capped at
``--cap-s``). Usage: sudo .venv/bin/python bench/db_failover.py [--runs 3]"""

from __future__ import annotations

import sys
from pathlib import Path

if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import itertools
import logging
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

import psycopg

from stack.centre.database import DatabaseCluster, centre_description, start_database
from stack.centre.description import DatabaseSpec
from stack.centre.machines import Centre, Machine

WRITERS = ("multihost", "haproxy", "naive")
TABLE = ("CREATE TABLE IF NOT EXISTS bench_failover"
         " (writer text, seq int, PRIMARY KEY (writer, seq))")


def writer_main(name: str, url: str, naive: bool) -> None:
    """A writer process: prints ``ok SEQ T`` per acknowledged row, ``err T REASON``."""
    from facility.db.connect import connect_sync

    seq, conn = 1, None  # the next row to write
    while True:
        try:
            if conn is None:
                conn = psycopg.connect(url, autocommit=True) if naive else connect_sync(url)
            conn.execute("INSERT INTO bench_failover VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (name, seq))
            print(f"ok {seq} {time.monotonic():.3f}", flush=True)
            seq += 1  # an error leaves it: the same row again (idempotent)
            time.sleep(0.05)
        except psycopg.Error as exc:
            print(f"err {time.monotonic():.3f} {str(exc).strip().splitlines()[0][:80]}",
                  flush=True)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.2)


@dataclass
class Writer:
    name: str
    proc: subprocess.Popen[bytes]
    acked: dict[int, float] = field(default_factory=dict)

    def follow(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            parts = raw.decode().split()
            if parts and parts[0] == "ok":
                self.acked[int(parts[1])] = float(parts[2])

    def first_after(self, t: float) -> float | None:
        later = [ts for ts in self.acked.values() if ts > t]
        return min(later) - t if later else None


def start_writer(client: Machine, name: str, url: str) -> Writer:
    argv = [sys.executable, __file__, "--writer", name, "--url", url]
    if name == "naive":
        argv.append("--naive")
    proc = subprocess.Popen(client.argv(argv), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    client.processes.append((f"writer-{name}", proc))  # killed with the centre
    writer = Writer(name, proc)
    threading.Thread(target=writer.follow, daemon=True).start()
    return writer


def one_kill(centre: Centre, db: DatabaseCluster, writers: dict[str, Writer],
             cap_s: float) -> dict[str, float | None]:
    old = db.wait_leader(60)
    db.wait_healthy(120)
    for w in writers.values():  # each writes steadily before the kill
        wait_until(lambda w=w: w.first_after(time.monotonic() - 1) is not None, 30)
    centre.machine(old).kill()
    t_kill = time.monotonic()  # link cut, every process dead: a write after this is new
    new = db.wait_leader(120, other_than=old)
    figures: dict[str, float | None] = {"patroni": time.monotonic() - t_kill}
    for name, w in writers.items():
        wait_until(lambda w=w: w.first_after(t_kill) is not None,
                   max(0.0, t_kill + cap_s - time.monotonic()))
        figures[name] = w.first_after(t_kill)
    print(f"killed {old} at {t_kill:.3f}: new leader {new} after {figures['patroni']:.1f} s; "
          "first write: " + ", ".join(f"{n} {fmt(figures[n])}" for n in writers), flush=True)
    centre.machine(old).revive()
    db.restart(old)
    return figures


def standby_kill(centre: Centre, db: DatabaseCluster, writers: dict[str, Writer],
                 window_s: float = 20.0) -> float:
    """Kill the synchronous standby's machine; the longest pause between two acknowledged
    writes of the multi-host writer around it (commits wait for a synchronous standby
    until Patroni names the other one)."""
    db.wait_healthy(120)
    victim = db.sync_standby()
    assert victim is not None
    writer = writers["multihost"]
    wait_until(lambda: writer.first_after(time.monotonic() - 1) is not None, 30)
    centre.machine(victim).kill()
    t_kill = time.monotonic()
    time.sleep(window_s)  # a measuring window, not a wait for a condition
    times = sorted(t for t in writer.acked.values() if t_kill - 1 <= t <= t_kill + window_s)
    stall = max((b - a for a, b in itertools.pairwise(times)), default=window_s)
    print(f"killed the synchronous standby {victim}: writes paused {stall:.1f} s "
          f"(new synchronous standby {db.sync_standby()})", flush=True)
    centre.machine(victim).revive()
    db.restart(victim)
    return stall


def wait_until(cond: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def lost_rows(centre: Centre, db: DatabaseCluster, writers: dict[str, Writer]) -> int:
    leader = db.wait_leader(60)

    def stored() -> set[tuple[str, int]]:
        with psycopg.connect(db.url()) as conn:
            return {(w, s) for w, s in conn.execute("SELECT writer, seq FROM bench_failover")}

    rows = centre.machine("client").call(stored)
    missing = [(w.name, seq, t) for w in writers.values() for seq, t in w.acked.items()
               if (w.name, seq) not in rows]
    for name, seq, t in missing:
        print(f"LOST: {name} row {seq} acknowledged at {t:.3f} (leader now {leader})")
    return len(missing)


def run(runs: int, cap_s: float, timings: tuple[int, int, int]) -> None:
    work = Path(tempfile.mkdtemp(prefix="facility-bench-dbf-"))
    work.chmod(0o755)  # the database runs as postgres
    centre = Centre.create(3, work)
    db: DatabaseCluster | None = None
    try:
        client = centre.add_machine("client")
        ttl, loop_wait, retry = timings
        spec = DatabaseSpec(machines=["m1", "m2", "m3"], ttl_s=ttl, loop_wait_s=loop_wait,
                            retry_timeout_s=retry)
        description = centre_description(centre, work / "data", spec=spec,
                                         haproxy=["m1", "m2", "m3", "client"])
        print(f"Patroni ttl {ttl} s, loop_wait {loop_wait} s, retry_timeout {retry} s")
        started = time.monotonic()
        db = start_database(centre, description, schema=False)
        print(f"cluster up in {time.monotonic() - started:.1f} s (leader {db.leader()})")

        def create() -> None:
            with psycopg.connect(db.url()) as conn:
                conn.execute(TABLE)

        client.call(create)
        urls = {"multihost": db.url(), "haproxy": db.haproxy_url("client"), "naive": db.url()}
        writers = {name: start_writer(client, name, urls[name]) for name in WRITERS}
        results = []
        for _ in range(runs):
            # a naive writer hung on a dead connection never comes back: a fresh one per run
            writers["naive"].proc.kill()
            writers["naive"] = start_writer(client, "naive", urls["naive"])
            results.append(one_kill(centre, db, writers, cap_s))
        stall = standby_kill(centre, db, writers)
        for w in writers.values():  # no write may be acknowledged after the count below
            w.proc.kill()
            w.proc.wait()
        lost = lost_rows(centre, db, writers)
        report(results, lost, cap_s, stall)
    finally:
        if db is not None:
            db.close()
        centre.close()


def report(results: list[dict[str, float | None]], lost: int, cap_s: float,
           stall: float) -> None:
    def median(key: str) -> str:
        values = [v if (v := r[key]) is not None else cap_s for r in results]
        m = statistics.median(values)
        return f">{cap_s:.0f}" if m >= cap_s else f"{m:.1f}"

    print("\nrun  patroni_s  multihost_s  haproxy_s  naive_s")
    for i, r in enumerate(results, 1):
        print(f"{i:>3}  " + "  ".join(fmt(r[k]).rjust(9) for k in
                                      ("patroni", "multihost", "haproxy", "naive")))
    print(f"RESULT db_failover_s={median('patroni')} multihost_first_write_s="
          f"{median('multihost')} haproxy_first_write_s={median('haproxy')} "
          f"naive_first_write_s={median('naive')} standby_kill_write_pause_s={stall:.1f} "
          f"lost={lost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cap-s", type=float, default=60.0,
                        help="stop waiting for a writer's first write after this")
    defaults = DatabaseSpec(machines=["m1", "m2", "m3"])  # what centre-config writes
    parser.add_argument("--ttl", type=int, default=defaults.ttl_s, help="Patroni ttl (s)")
    parser.add_argument("--loop-wait", type=int, default=defaults.loop_wait_s,
                        help="Patroni loop_wait (s)")
    parser.add_argument("--retry-timeout", type=int, default=defaults.retry_timeout_s,
                        help="Patroni retry_timeout (s)")
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer_main(args.writer, args.url, args.naive)
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    run(args.runs, args.cap_s, (args.ttl, args.loop_wait, args.retry_timeout))


if __name__ == "__main__":
    main()
