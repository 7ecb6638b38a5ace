"""Work orders and the monthly report through the API against a real PostgreSQL:
a repair request from the desk with its checklist; assign, accept, arrive, tick steps with
notes, resolve, with the timeline and the outbox events; refusals (someone else's order,
required steps left, a move the state machine forbids, assigning a non-technician); alarm
shelving with a comment; the report's figures and CSV (telemetry: test_api_telemetry.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_entrapment, seed_site

API = "/api/v1"


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def test_repair_request_to_resolution(client: httpx.AsyncClient, database_url: str) -> None:
    desk, tech, manager = [await login(client, r) for r in ("operator", "technician", "manager")]
    resp = await client.post(f"{API}/work-orders", headers=desk, json={
        "site": "tsite", "building": "b", "device": "b-elevator-1", "category": "noise",
        "trade": "elevator", "priority": "high", "title": "电梯异响 Noisy lift",
        "location": "B lobby", "reporter_name": "王先生", "reporter_phone": "13800000000"})
    assert resp.status_code == 201, resp.text
    order = resp.json()
    wo = order["id"]
    assert (order["origin"], order["state"], order["device"], order["fault"]) == (
        "request", "open", "b-elevator-1", "noise")
    assert order["requester"]["name"] == "王先生" and order["requester"]["taken_by"] == "operator"
    assert [s["seq"] for s in order["steps"]] == [1] and order["steps"][0]["required"]
    assert order["next_deadline_kind"] == "resolve" and not order["overdue"]

    other = await client.post(f"{API}/work-orders/{wo}/transition", headers=tech,
                              json={"to": "on_site"})
    assert other.status_code == 403  # not his order yet
    resp = await client.post(f"{API}/work-orders/{wo}/assign", headers=manager,
                             json={"assignee": "operator"})
    assert resp.status_code == 400
    assert resp.json() == {"detail": "operator is a operator, not a technician"}
    resp = await client.post(f"{API}/work-orders/{wo}/assign", headers=manager,
                             json={"assignee": "technician", "note": "on call"})
    assert resp.status_code == 200 and resp.json()["assignee"] == "technician"
    mine = await client.get(f"{API}/work-orders", params={"mine": "true", "open": "true"},
                            headers=tech)
    assert [w["id"] for w in mine.json()] == [wo]
    for to in ("accepted", "on_site"):
        resp = await client.post(f"{API}/work-orders/{wo}/transition", headers=tech,
                                 json={"to": to})
        assert resp.status_code == 200 and resp.json()["state"] == to
    early = await client.post(f"{API}/work-orders/{wo}/transition", headers=tech,
                              json={"to": "resolved"})
    assert early.status_code == 409
    assert early.json()["detail"] == f"work order {wo}: required steps not done: 1"
    resp = await client.post(f"{API}/work-orders/{wo}/steps/1", headers=tech,
                             json={"note": "bearing greased"})
    step = resp.json()["steps"][0]
    assert (step["done_by"], step["note"]) == ("technician", "bearing greased")
    assert (await client.post(f"{API}/work-orders/{wo}/steps/9", headers=tech)).status_code == 404
    resp = await client.post(f"{API}/work-orders/{wo}/transition", headers=tech,
                             json={"to": "resolved", "note": "fixed"})
    assert resp.status_code == 200
    done = resp.json()
    assert done["state"] == "resolved" and done["resolved_at"] is not None
    assert [e["event"] for e in done["events"]] == [
        "created", "assigned", "accepted", "arrived", "step_done", "resolved"]
    bad = await client.post(f"{API}/work-orders/{wo}/transition", headers=desk,
                            json={"to": "cancelled"})
    assert bad.status_code == 409 and "cannot go from resolved to cancelled" in bad.json()["detail"]
    kinds = [r[0] for r in run_sql(database_url, "SELECT kind FROM events ORDER BY id")]
    assert kinds == ["work_order.created", "work_order.assigned", "work_order.accepted",
                     "work_order.arrived", "work_order.step_done", "work_order.resolved"]


async def test_bad_bodies_are_4xx_with_a_message(client: httpx.AsyncClient) -> None:
    desk = await login(client, "operator")
    cases = [
        {"site": "tsite", "category": "x", "trade": "plumbing"},  # no title
        {"site": "tsite", "category": "x", "trade": "carpentry", "title": "t"},
        {"site": "tsite", "category": "x", "trade": "plumbing", "title": "t", "extra": 1},
    ]
    for body in cases:
        resp = await client.post(f"{API}/work-orders", headers=desk, json=body)
        assert resp.status_code == 422
        assert isinstance(resp.json()["detail"], str) and resp.json()["errors"]
    resp = await client.post(f"{API}/work-orders", headers=desk, json={
        "site": "nowhere", "category": "x", "trade": "plumbing", "title": "t"})
    assert resp.status_code == 404 and resp.json() == {"detail": "site nowhere not found"}
    resp = await client.post(f"{API}/work-orders", headers=desk, content=b"{not json",
                             )
    assert resp.status_code == 422


async def test_shelve_needs_a_reason_and_expires(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alarm, _wo = await seed_entrapment(database_url)
    op = await login(client, "operator")
    resp = await client.post(f"{API}/alarms/{alarm}/shelve", headers=op,
                             json={"minutes": 30, "comment": ""})
    assert resp.status_code == 400 and "needs a comment" in resp.json()["detail"]
    resp = await client.post(f"{API}/alarms/{alarm}/shelve", headers=op,
                             json={"minutes": 30, "comment": "camera: car empty"})
    assert resp.status_code == 200 and resp.json()["shelved_until"] is not None
    shelved = await client.get(f"{API}/alarms", params={"shelved": "true"}, headers=op)
    assert [a["id"] for a in shelved.json()] == [alarm]
    history = (await client.get(f"{API}/alarms/{alarm}", headers=op)).json()["events"]
    assert history[-1]["event"] == "shelved"
    assert history[-1]["detail"]["comment"] == "camera: car empty"
    too_long = await client.post(f"{API}/alarms/{alarm}/shelve", headers=op,
                                 json={"minutes": 100_000, "comment": "x"})
    assert too_long.status_code == 422


async def test_the_monthly_report(client: httpx.AsyncClient, database_url: str) -> None:
    alarm, wo = await seed_entrapment(database_url)
    run_sql(database_url, "UPDATE alarms SET raised_at = '2025-03-10T08:00:00Z',"
            " acked_at = '2025-03-10T08:01:00Z' WHERE id = %s", (alarm,))
    run_sql(database_url, "UPDATE work_orders SET created_at = '2025-03-10T08:00:00Z',"
            " resolved_at = '2025-03-10T08:40:00Z', state = 'resolved',"
            " due_at = '2025-03-10T10:00:00Z' WHERE id = %s", (wo,))
    run_sql(database_url, "INSERT INTO work_order_events (work_order_id, time, event, actor)"
            " VALUES (%s, '2025-03-10T08:03:00Z', 'accepted', 't'),"
            " (%s, '2025-03-10T08:40:00Z', 'arrived', 't')", (wo, wo))
    manager = await login(client, "manager")
    resp = await client.get(f"{API}/reports/monthly", headers=manager,
                            params={"site": "tsite", "month": "2025-03"})
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["alarms"] == {"alarms": 1, "mtta_s": 60.0, "ack_overdue": 0}
    orders = report["work_orders"]
    assert (orders["count"], orders["mtta_s"], orders["mttr_s"]) == (1, 180.0, 2400.0)
    assert (orders["sla_accept"], orders["sla_arrive"], orders["sla_resolve"]) == (1.0, 0.0, 1.0)
    assert report["by_trade"][0]["trade"] == "elevator"
    assert report["by_cause"][0]["cause"] == "entrapment"
    assert report["pm"]["compliance"] is None
    csv_resp = await client.get(f"{API}/reports/monthly.csv", headers=manager,
                                params={"site": "tsite", "month": "2025-03"})
    assert csv_resp.headers["content-type"].startswith("text/csv")
    assert "tsite,2025-03,work_orders,all,mttr_s,2400.0" in csv_resp.text
    for params in ({"site": "tsite", "month": "2025-13"},
                   {"site": "tsite", "month": "2025-03", "tz": "Mars/Olympus"}):
        assert (await client.get(f"{API}/reports/monthly", headers=manager,
                                 params=params)).status_code in (400, 422)
