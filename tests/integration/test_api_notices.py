"""Notices to residents against a real PostgreSQL (issue 16 item 6): an outage alarm raised by
the rules service's own functions drafts a notice for its building; the duty room edits it and
publishes it; the public page shows it without sign-in (and nothing else); the notice closes
when the alarm's work order is resolved, or, for an alarm without an order, when it clears;
every change is in the audit log; a non-outage alarm drafts nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from api.app import create_app
from facility.db.registry import sync_site
from facility.procedures import load_procedures, upsert_procedures
from facility.site import load_site
from facility.users import ensure_demo_users
from rules.alarms import clear_alarm, raise_alarm
from rules.engine_types import ClearAlarm, RaiseAlarm
from rules.work_orders import open_for_alarm
from tests.integration.api_support import PASSWORD, ROOT, api_client, login, run_sql

API = "/api/v1"
SITE_YAML = """
site: nsite
name: Notice Estate 通知小区
gateways: [{id: gw-a}]
buildings:
  - id: a
    name: Building A 一号楼
    gateway: gw-a
    devices:
      - {id: a-switchgear, type: switchgear, profile: switchgear,
         address: {protocol: modbus, port: 15024}}
      - {id: a-gas, type: gas_detector, profile: gas_detector,
         address: {protocol: modbus, port: 15026}}
"""


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML, encoding="utf-8")
    site = load_site(path, profiles_dir=ROOT / "profiles")
    with psycopg.connect(database_url) as conn:
        sync_site(conn, site)
        ensure_demo_users(conn, PASSWORD)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def raise_outage(database_url: str, device: str, rule: str,
                       procedure: str | None) -> tuple[int, int | None]:
    """(alarm id, work order id or None), as the rules service raises them."""
    procedures = load_procedures(ROOT / "procedures")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await upsert_procedures(conn, procedures)
        cur = await conn.execute("SELECT id, site_id FROM devices WHERE name = %s", (device,))
        row = await cur.fetchone()
        assert row is not None
        act = RaiseAlarm(source=device, device=device, gateway=None, rule_id=rule,
                         alarm_type=rule, priority="critical", procedure=procedure,
                         message=rule, detail={}, at=datetime.now(UTC))
        async with conn.transaction():
            alarm, _ = await raise_alarm(conn, row[1], row[0], act)
            if procedure is None:
                return alarm.id, None
            created = await open_for_alarm(
                conn, site_id=row[1], device_id=row[0], source=device, fault=rule,
                alarm_id=alarm.id, procedure=procedures[procedure], description=rule,
                now=act.at)
    return alarm.id, created[0].work_order_id


async def test_an_outage_drafts_a_notice_published_publicly_and_closed_on_resolution(
    client: httpx.AsyncClient, database_url: str,
) -> None:
    alarm_id, wo = await raise_outage(database_url, "a-switchgear", "power_outage",
                                      "power_outage")
    operator = await login(client, "operator")
    [draft] = (await client.get(f"{API}/notices?site=nsite", headers=operator)).json()
    assert (draft["alarm_id"], draft["building"], draft["kind"], draft["state"]) == (
        alarm_id, "a", "power", "draft")
    assert draft["title"] == "停电通知 Power outage notice"
    assert "停电" in draft["body"] and "power outage" in draft["body"]
    public = await client.get("/public/nsite/notices")  # no token
    assert public.status_code == 200 and "没有通知" in public.text  # a draft is not public

    resp = await client.patch(f"{API}/notices/{draft['id']}", headers=operator, json={
        "body": "一号楼因配电故障停电 预计18:00恢复。", "expected_restore":
        "2026-05-01T10:00:00Z"})
    assert resp.status_code == 200, resp.text
    resp = await client.post(f"{API}/notices/{draft['id']}/publish", headers=operator)
    assert resp.json()["state"] == "published" and resp.json()["published_by"] == "operator"
    public = await client.get("/public/nsite/notices")
    assert "一号楼因配电故障停电" in public.text and "Building A 一号楼" in public.text
    assert "2026-05-01 18:00" in public.text  # the expected restoration in local time
    assert "a-switchgear" not in public.text and "power_outage" not in public.text
    assert (await client.get("/public/other/notices")).status_code == 404
    tech = await login(client, "technician")
    assert (await client.get(f"{API}/notices", headers=tech)).status_code == 403

    run_sql(database_url, "UPDATE work_orders SET state = 'resolved', resolved_at = now()"
            " WHERE id = %s", (wo,))
    closed = (await client.get(f"{API}/notices/{draft['id']}", headers=operator)).json()
    assert closed["state"] == "closed" and closed["closed_at"] is not None
    assert "没有通知" in (await client.get("/public/nsite/notices")).text
    refused = await client.patch(f"{API}/notices/{draft['id']}", headers=operator,
                                 json={"title": "x"})
    assert refused.status_code == 409
    admin = await login(client, "admin")
    actions = [e["action"] for e in (await client.get(f"{API}/audit?action=notice",
                                                      headers=admin)).json()]
    assert actions == ["notice.publish", "notice.update"]


async def test_a_grouped_outage_without_an_order_closes_its_notice_when_it_clears(
    client: httpx.AsyncClient, database_url: str,
) -> None:
    await raise_outage(database_url, "a-gas", "gas_leak", "gas_leak")  # drafts nothing
    alarm_id, _ = await raise_outage(database_url, "a-gas", "gas_outage", None)
    operator = await login(client, "operator")
    [draft] = (await client.get(f"{API}/notices", headers=operator)).json()
    assert (draft["alarm_id"], draft["kind"], draft["title"]) == (
        alarm_id, "gas", "停气通知 Gas outage notice")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await clear_alarm(conn, ClearAlarm(source="a-gas", device="a-gas", rule_id="gas_outage",
                                           alarm_type="gas_outage", at=datetime.now(UTC)))
    assert (await client.get(f"{API}/notices/{draft['id']}",
                             headers=operator)).json()["state"] == "closed"


async def test_the_duty_room_writes_a_notice_by_hand(client: httpx.AsyncClient) -> None:
    manager = await login(client, "manager")
    resp = await client.post(f"{API}/notices", headers=manager, json={
        "site": "nsite", "building": "a", "kind": "water", "title": "计划停水通知",
        "body": "明日9:00-12:00水箱清洗停水。", "since": "2026-05-02T01:00:00Z",
        "expected_restore": "2026-05-02T04:00:00Z"})
    assert resp.status_code == 201, resp.text
    notice = resp.json()
    assert notice["state"] == "draft" and notice["alarm_id"] is None
    await client.post(f"{API}/notices/{notice['id']}/publish", headers=manager)
    assert "水箱清洗停水" in (await client.get("/public/nsite/notices")).text
    resp = await client.post(f"{API}/notices/{notice['id']}/close", headers=manager)
    assert resp.json()["state"] == "closed"
