"""What the pages read about escalation, through the API against a real PostgreSQL: an alarm
past its acknowledge time shows overdue with its escalation level; an order shows its next
step deadline and its steps late, each step its clock; the monthly report counts late steps
and alarms not acknowledged in time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_site
from tests.integration.test_api_alarms import add_alarm, add_entrapment_order

API = "/api/v1"


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def test_overdue_alarms_late_steps_and_the_monthly_count(
    client: httpx.AsyncClient, database_url: str,
) -> None:
    late = add_alarm(database_url, "a-firepanel", "fire_alarm", "critical", "unack", True,
                     "2025-01-01T10:00:00Z")
    fresh = add_alarm(database_url, "b-elevator-1", "fault_code", "high", "unack", True,
                      "2025-01-01T10:00:00Z")
    run_sql(database_url, "INSERT INTO alarm_timers (alarm_id, site_id, policy, ack_due_at,"
            " level, overdue_at, due_at, updated_at) VALUES (%s, 'tsite', 'with_order',"
            " '2025-01-01T10:01:00Z', 2, '2025-01-01T10:01:00Z', NULL, now()),"
            " (%s, 'tsite', 'without_order', now() + interval '1 hour', 0, NULL, NULL, now())",
            (late, fresh))
    wo = add_entrapment_order(database_url, late)
    # step 1 was done at 10:01 against a 10:00:30 limit (late); step 2 runs past 10:05
    run_sql(database_url, "UPDATE work_order_steps SET clock = 'raised', started_at ="
            " '2025-01-01T10:00:00Z', due_at = CASE seq WHEN 1 THEN timestamptz"
            " '2025-01-01T10:00:30Z' ELSE timestamptz '2025-01-01T10:05:00Z' END,"
            " overdue_at = CASE seq WHEN 2 THEN timestamptz '2025-01-01T10:05:01Z' END"
            " WHERE work_order_id = %s", (wo,))
    headers = await login(client, "manager")
    alarms = {a["id"]: a for a in (await client.get(f"{API}/alarms", headers=headers)).json()}
    assert (alarms[late]["ack_overdue"], alarms[late]["escalation_level"]) == (True, 2)
    assert alarms[late]["ack_due_at"].startswith("2025-01-01T10:01:00")
    assert (alarms[fresh]["ack_overdue"], alarms[fresh]["escalation_level"]) == (False, 0)
    order = (await client.get(f"{API}/work-orders/{wo}", headers=headers)).json()
    assert order["step_due_at"].startswith("2025-01-01T10:05:00") and order["steps_overdue"] == 1
    step2 = next(s for s in order["steps"] if s["seq"] == 2)
    assert (step2["clock"], step2["overdue_at"][:19]) == ("raised", "2025-01-01T10:05:01")
    report = (await client.get(f"{API}/reports/monthly?site=tsite&month=2025-01&tz=UTC",
                               headers=headers)).json()
    assert report["steps"] == {"timed": 2, "late": 2, "late_done": 1, "late_not_done": 1,
                               "on_time": 0.0}
    assert report["alarms"]["ack_overdue"] == 1
    csv = (await client.get(f"{API}/reports/monthly.csv?site=tsite&month=2025-01&tz=UTC",
                            headers=headers)).text
    assert "steps,all,late,2" in csv
