"""Two ingest and two rules processes of one site with ``--standby`` (issue 22): one of each
is active, the other waits for the lock; the active ones are killed with SIGKILL in the
middle of an entrapment's on-delay while telemetry keeps coming. The standbys take over
within the lock's poll bound, nothing the broker acknowledged is lost, the alarm and its
work order are raised once (counted from the outbox events the code wrote, not from what a
unique index would refuse), and a standby never opened its MQTT session before it held the
lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from facility import topics
from facility.db.active_lock import LockTiming
from facility.messages import Telemetry, encode
from facility.mqtt import MqttClient
from facility.topics import TopicKind
from tests.integration.stop_support import start, wait_log
from tests.integration.test_rules_service import (
    FREE,
    PROCEDURES,
    TRAPPED,
    eventually,
    make_site,
    publisher,
    query,
)

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5
TIMING = LockTiming(poll_s=POLL_S, check_s=POLL_S)
HOLDERS = ("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
           "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s")


@dataclass
class Instance:
    name: str
    log: Path
    proc: subprocess.Popen[bytes]


async def holder(database_url: str, lock: str) -> int | None:
    """The pid of the process whose lock connection holds ``lock`` (None: nobody)."""
    rows = await query(database_url, HOLDERS, f"lock {lock} pid %")
    assert len(rows) <= 1, rows
    if not rows:
        return None
    match = re.search(r" pid (\d+) ", rows[0][0])
    assert match is not None
    return int(match.group(1))


async def until_held(database_url: str, lock: str, *, not_by: int | None = None,
                     timeout_s: float = 60) -> int:
    async with asyncio.timeout(timeout_s):
        while True:
            pid = await holder(database_url, lock)
            if pid is not None and pid != not_by:
                return pid
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def pairs(tmp_path: Path, site_path: Path, env: dict[str, str]
                ) -> AsyncIterator[dict[str, list[Instance]]]:
    standby = ["--standby", "--lock-poll-s", str(POLL_S)]
    argv = {"rules": ["rules", "--site", str(site_path), "--procedures", str(PROCEDURES),
                      *standby],
            "ingest": ["ingest", "--site", str(site_path), "--batch-ms", "50", *standby]}
    running: dict[str, list[Instance]] = {"rules": [], "ingest": []}
    try:
        for service, args in argv.items():
            for n in (1, 2):
                log = tmp_path / f"{service}-{n}.log"
                running[service].append(Instance(f"{service}-{n}", log,
                                                 start(f"{service}-{n}", args, log, env, ROOT)))
        yield running
    finally:
        for inst in [i for group in running.values() for i in group]:
            if inst.proc.poll() is None:
                inst.proc.send_signal(signal.SIGTERM)
        for inst in [i for group in running.values() for i in group]:
            try:
                inst.proc.wait(30)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait()


class Publisher:
    """Numbered telemetry for one lift; remembers the timestamps the broker acknowledged.
    ``stop`` ends it between two messages (a cancellation could land after the broker took a
    message and before its acknowledgement was recorded: stored, never counted as sent)."""

    def __init__(self, client: MqttClient, site_id: str, device: str) -> None:
        self.client, self.device = client, device
        self.topic = topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", device)
        self.points: dict[str, bool | int | float | str] = dict(FREE)
        self.acked: list[datetime] = []
        self.seq = 0
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        while not self.stopped.is_set():
            self.seq += 1
            ts = datetime.now(UTC)
            msg = Telemetry(ts=ts, seq=self.seq, session="s1", points=dict(self.points))
            await self.client.publish(self.topic, encode(msg), qos=1, timeout_s=10)
            self.acked.append(ts)
            await asyncio.sleep(0.02)

    async def stop(self, running: asyncio.Task[None]) -> None:
        self.stopped.set()
        async with asyncio.timeout(30):  # a publish waits 10 s at most for its PUBACK
            await running


async def every_acknowledged_stored(database_url: str, device: str, acked: list[datetime]) -> None:
    """Every message the broker acknowledged is stored: as many distinct timestamps as
    acknowledgements (the table's key keeps a point's time once)."""
    stored = await eventually(
        database_url, "SELECT count(DISTINCT t.time) FROM telemetry t JOIN points p "
        "ON p.id = t.point_id JOIN devices d ON d.id = p.device_id WHERE d.name = %s",
        device, check=lambda rows: rows[0][0] >= len(acked), timeout_s=60)
    assert stored[0][0] == len(acked)


def by_pid(instances: list[Instance], pid: int) -> Instance:
    [inst] = [i for i in instances if i.proc.pid == pid]
    return inst


async def test_standbys_take_over_from_killed_actives_losing_and_doubling_nothing(
    tmp_path: Path, database_url: str, mqtt_url: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=3)
    lift = f"{site_id}-lift"
    env = os.environ | {"FACILITY_DATABASE_URL": database_url, "FACILITY_MQTT_URL": mqtt_url,
                        "PYTHONPATH": str(ROOT)}
    async with pairs(tmp_path, site.path, env) as running, \
            publisher(mqtt_url, "5") as client:
        active = {}
        for service, lock in (("rules", f"rules-{site_id}"), ("ingest", f"ingest-{site_id}")):
            pid = await until_held(database_url, lock)
            active[service] = by_pid(running[service], pid)
            wait_log(active[service].proc, active[service].log, f"{service} subscribed", 60)
            # the other instance has tried the lock and stands by (on a loaded machine its
            # first try could otherwise come after the kill, and it would never have stood by)
            [standby] = [i for i in running[service] if i is not active[service]]
            wait_log(standby.proc, standby.log, "standing by", 60)
        pub = Publisher(client, site_id, lift)
        sending = asyncio.create_task(pub.run())
        try:
            pub.points = dict(TRAPPED)  # the on-delay starts in the active rules process
            await eventually(database_url, "SELECT 1 FROM rule_state WHERE source = %s AND "
                             "rule_id = 'entrapment' AND (state->>'condition')::boolean",
                             lift, timeout_s=30)
            killed_at = time.monotonic()
            for inst in active.values():
                inst.proc.send_signal(signal.SIGKILL)
            took_over = {}
            for service, lock in (("rules", f"rules-{site_id}"),
                                  ("ingest", f"ingest-{site_id}")):
                pid = await until_held(database_url, lock, not_by=active[service].proc.pid)
                took_over[service] = time.monotonic() - killed_at
                assert pid != active[service].proc.pid
            # the socket of a killed process closes at once: the lock is free at once, and
            # the standby's next try (every poll_s) takes it
            bound_s = TIMING.poll_s + TIMING.check_timeout_s + TIMING.server_release_s
            assert max(took_over.values()) <= bound_s, took_over
            await eventually(database_url, "SELECT 1 FROM work_orders", timeout_s=60)
            # the survivor's lock connection breaks (as in a database failover): it stops
            # consuming at once, takes the lock again, resumes, and clears the alarm
            survivor = by_pid(running["rules"], await holder(database_url, f"rules-{site_id}")
                              or 0)
            await query(database_url, "SELECT pg_terminate_backend(a.pid) FROM "
                        "pg_stat_activity a WHERE a.application_name LIKE %s",
                        f"lock rules-{site_id} pid %")
            wait_log(survivor.proc, survivor.log, "lock connection lost", 30)
            await until_held(database_url, f"rules-{site_id}")
            pub.points = dict(FREE)
            await eventually(database_url, "SELECT 1 FROM alarms WHERE NOT active",
                             timeout_s=60)
        finally:
            await pub.stop(sending)
        acked = pub.acked
        await every_acknowledged_stored(database_url, lift, acked)
        kinds = await query(database_url, "SELECT kind, count(*) FROM events GROUP BY kind")
        counted = dict(kinds)
        assert counted.get("alarm.raised") == 1, counted
        assert counted.get("work_order.created") == 1, counted
        for service in ("rules", "ingest"):
            [standby] = [i for i in running[service] if i is not active[service]]
            text = standby.log.read_text(errors="replace")
            assert "standing by" in text
            assert text.index("active for") < text.index("MQTT connected"), text[-3000:]
