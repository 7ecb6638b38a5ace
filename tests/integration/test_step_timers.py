"""Step timers against a real PostgreSQL and a local provider server (time injected into the
dispatcher): an entrapment order's steps timed from the alarm run from its raising, the
contractor's from acceptance; a step that runs out escalates once (event, outbox, audit row,
Tencent SMS to the technician and the supervisor), a step ticked in time does not, and the
call still due for a step ticked meanwhile is dropped while the other is placed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from facility.db.registry import sync_site
from facility.procedures import upsert_procedures
from facility.site import Site, load_site
from facility.workorders import complete_step, transition
from rules.dispatch.alerting import resolve_keys
from rules.dispatch.config import Dispatch, DispatchConfig
from rules.dispatch.service import Dispatcher
from tests.integration.dispatch_support import (
    ALL_DAY,
    PROCEDURES,
    Clock,
    eventually,
    open_entrapment,
    running,
)
from tests.integration.provider_support import KEYS_ENV, phone_channels, provider_server

ROOT = Path(__file__).resolve().parents[2]



def dispatch(url: str) -> Dispatch:
    cfg = DispatchConfig.model_validate({
        "site": "demo",
        "staff": [{"username": "tech-lift", "mobile": "13800000021"},
                  {"username": "boss", "mobile": "13800000022"}],
        "rosters": {**{t: {"shifts": [{**ALL_DAY, "on_call": ["tech-lift"]}]}
                       for t in ("elevator", "electrical", "plumbing", "fire", "general")},
                    "engineering_supervisor": {"backup": ["boss"]}},
        "channels": phone_channels(url),
        "loud": {"sms": ["tc-sms"], "voice": ["ali-call"],
                 "by_priority": {"critical": {"sms_after": "0s", "voice_after": "10m"}}},
        "acknowledgement": {"enabled": False},
    })
    keys, missing = resolve_keys(cfg.channels, KEYS_ENV)
    assert not missing
    return Dispatch(cfg, {}, ROOT / "sites" / "x.yaml", keys)


@pytest.fixture
def site() -> Site:
    return load_site(ROOT / "sites" / "demo.yaml")


async def test_a_timed_step_that_runs_out_escalates_once_and_a_ticked_one_does_not(
    database_url: str, site: Site,
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(database_url, autocommit=True) as sync:
        sync_site(sync, site)
    async with provider_server(("LTAI-test", "ali-secret"), ("AKID-test", "tc-secret")) as srv, \
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await upsert_procedures(conn, PROCEDURES)
        wo = await open_entrapment(conn, t0, PROCEDURES)
        steps = await eventually(conn, "SELECT seq, clock, due_at FROM work_order_steps WHERE"
                                       " work_order_id = %s ORDER BY seq", wo)
        clock = Clock(t0 + timedelta(seconds=1))
        async with running(Dispatcher(site, dispatch(srv.url()), PROCEDURES, database_url,
                                      clock=clock)):
            await eventually(conn, "SELECT 1 FROM work_orders WHERE id = %s AND state ="
                                   " 'assigned'", wo)
            # the assignment's SMS goes out before the order is accepted (once accepted, an
            # SMS still waiting for the sweep is no longer needed and is cancelled)
            await srv.wait("TencentSendSms", 1)
            await transition(conn, wo, "accepted", "tech-lift", now=t0 + timedelta(seconds=30))
            await complete_step(conn, wo, 1, "tech-lift", now=t0 + timedelta(seconds=60))
            clock.now = t0 + timedelta(minutes=5, seconds=1)  # steps 2 and 3 (5 min) run out
            overdue = await eventually(
                conn, "SELECT array_agg((detail->>'seq')::int ORDER BY id) FROM"
                      " work_order_events WHERE work_order_id = %s AND event = 'step_overdue'"
                      " HAVING count(*) = 2", wo)
            texts = await srv.wait("TencentSendSms", 5)  # the assignment, then 2 steps x 2
            await complete_step(conn, wo, 2, "tech-lift", now=clock.now)
            clock.now = t0 + timedelta(minutes=15, seconds=2)  # the calls fall due
            calls = await srv.wait("SingleCallByTts")
            states = await eventually(
                conn, "SELECT step_seq, state, count(*) FROM notification_deliveries WHERE"
                      " work_order_id = %s AND channel = 'ali-call' AND state <> 'pending'"
                      " GROUP BY 1, 2 HAVING count(*) = 2 ORDER BY 1", wo)
        after = await (await conn.execute(
            "SELECT seq, clock, started_at, due_at, overdue_at FROM work_order_steps WHERE"
            " work_order_id = %s ORDER BY seq", (wo,))).fetchall()
        audit = await (await conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'work_order.step_overdue'"
            " AND target = %s", (f"work_order:{wo}",))).fetchone()
        kinds = await (await conn.execute(
            "SELECT count(*) FROM events WHERE kind = 'work_order.step_overdue'")).fetchone()
        assigned_call = await (await conn.execute(
            "SELECT state FROM notification_deliveries WHERE work_order_id = %s AND event ="
            " 'assigned' AND channel = 'ali-call'", (wo,))).fetchall()
    assert [s[1] for s in steps] == ["raised"] * 4 + ["accepted"] * 2 + ["raised"]
    assert steps[1][2] == t0 + timedelta(minutes=5)  # the guard: 5 min from the alarm
    assert steps[4][2] is None  # the contractor's clock waits for acceptance
    assert after[4][3] == t0 + timedelta(seconds=30, minutes=30)
    assert overdue == [([2, 3],)]
    assert [a[4] is not None for a in after] == [False, True, True, False, False, False, False]
    assert all(r.signature_ok for r in srv.received)
    assert sorted(n for r in texts[1:] for n in r.params["PhoneNumberSet"]) == [
        "+8613800000021", "+8613800000021", "+8613800000022", "+8613800000022"]
    assert audit == (2,) and kinds == (2,)
    # step 2 was ticked before its call fell due: dropped; step 3's calls were placed
    assert states == [(2, "cancelled", 2), (3, "sent", 2)]
    assert len(calls) >= 1 and assigned_call == [("cancelled",)]
