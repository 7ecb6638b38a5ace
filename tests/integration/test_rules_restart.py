"""The rules service as a process, killed with SIGKILL and restarted mid-alarm: a running
on-delay resumes from the saved state (no telemetry needed), the alarm is not lost, and the
restarted service neither duplicates the alarm nor its work order, and still clears it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.test_rules_service import (
    FREE,
    PROCEDURES,
    TRAPPED,
    Sender,
    eventually,
    make_site,
    publisher,
    query,
)

pytestmark = [pytest.mark.slow]


@contextmanager
def rules_process(site_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str,
                  log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = os.environ | {"FACILITY_DATABASE_URL": database_url, "FACILITY_MQTT_URL": mqtt_url,
                        "FACILITY_MQTT_PROTOCOL": mqtt_protocol}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "rules", "--site", str(site_path),
             "--procedures", str(PROCEDURES)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


async def test_sigkill_mid_on_delay_and_mid_alarm_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=4)
    lift = f"{site_id}-lift"
    log = tmp_path / "rules.log"
    state_sql = "SELECT state FROM rule_state WHERE source = %s AND rule_id = 'entrapment'"
    async with publisher(mqtt_url, mqtt_protocol) as pub:
        send = Sender(pub, site)
        with rules_process(site.path, database_url, mqtt_url, mqtt_protocol, log) as proc:
            # the on-delay starts (state saved), then the process dies before it runs out
            [(saved,)] = await eventually(database_url, state_sql, lift, timeout_s=30,
                                          while_waiting=lambda: send.telemetry(lift, TRAPPED))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert saved["condition"] is True and saved["active"] is False
        assert await query(database_url, "SELECT id FROM alarms") == []

        with rules_process(site.path, database_url, mqtt_url, mqtt_protocol, log) as proc:
            # no telemetry at all: the saved timer alone raises the alarm and opens the order
            await eventually(database_url, "SELECT id FROM work_orders", timeout_s=30)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

        with rules_process(site.path, database_url, mqtt_url, mqtt_protocol, log):
            # the condition persists through the restart: still one alarm, one order
            for _ in range(10):
                await send.telemetry(lift, TRAPPED)
            await eventually(database_url, "SELECT 1 FROM alarms WHERE NOT active",
                             timeout_s=30, while_waiting=lambda: send.telemetry(lift, FREE))
    rows = await query(database_url, "SELECT state, repeat_count, raised_at FROM alarms")
    [(state, repeats, raised_at)] = rows
    assert (state, repeats) == ("rtn_unack", 0)
    held = (raised_at - datetime.fromisoformat(saved["since"])).total_seconds()
    assert held >= 4  # the on-delay counted from before the kill
    assert len(await query(database_url, "SELECT id FROM work_orders")) == 1
    kinds = [k for (k,) in await query(database_url, "SELECT kind FROM events ORDER BY id")]
    assert kinds == ["alarm.raised", "work_order.created", "alarm.cleared"]
