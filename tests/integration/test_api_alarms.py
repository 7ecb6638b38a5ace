"""Alarms and work orders through the API against a real PostgreSQL: listing and filtering,
acknowledgement with its role check, state change and event row, conflicts, the work-order
detail with its procedure steps and timeline, and malformed ids answered 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from psycopg.types.json import Jsonb

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_site


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


def add_alarm(url: str, device: str, alarm_type: str, priority: str, state: str,
              active: bool, raised_at: str) -> int:
    rows = run_sql(
        url,
        "INSERT INTO alarms (site_id, device_id, source, alarm_type, rule_id, priority, state,"
        " active, message, raised_at) SELECT 'tsite', id, name, %s, %s, %s, %s, %s, %s, %s"
        " FROM devices WHERE name = %s RETURNING id",
        (alarm_type, alarm_type, priority, state, active, f"{alarm_type} on {device}",
         raised_at, device),
    )
    return int(rows[0][0])


def add_entrapment_order(url: str, alarm_id: int) -> int:
    run_sql(url, "INSERT INTO procedures (id, title, title_en, trade, priority, body) VALUES"
            " ('elevator_entrapment', '电梯困人处理流程', 'Elevator entrapment', 'elevator',"
            " 'critical', %s)", (Jsonb({"steps": []}),))
    rows = run_sql(
        url,
        "INSERT INTO work_orders (site_id, device_id, source, fault, origin, alarm_id,"
        " procedure_id, title, trade, priority, state, assignee, created_at, updated_at)"
        " SELECT 'tsite', id, name, 'entrapment', 'alarm', %s, 'elevator_entrapment',"
        " 'Entrapment a-elevator-1', 'elevator', 'critical', 'accepted', 'technician',"
        " '2025-01-01T10:00:00Z', '2025-01-01T10:02:00Z' FROM devices"
        " WHERE name = 'a-elevator-1' RETURNING id",
        (alarm_id,),
    )
    wo = int(rows[0][0])
    for seq, role, action, done_by in (
        (2, "guard", "到达轿厢所在楼层并守候", None),
        (1, "operator", "通过监控和对讲确认楼层与被困人数并安抚乘客", "operator"),
    ):
        run_sql(url, "INSERT INTO work_order_steps (work_order_id, seq, role, action, action_en,"
                " time_limit_s, done_at, done_by) VALUES (%s, %s, %s, %s, %s, 300, %s, %s)",
                (wo, seq, role, action, f"step {seq}",
                 "2025-01-01T10:01:00Z" if done_by else None, done_by))
    for time, event, actor, old, new in (
        ("2025-01-01T10:00:00Z", "created", "rules", None, "open"),
        ("2025-01-01T10:02:00Z", "accepted", "technician", "open", "accepted"),
    ):
        run_sql(url, "INSERT INTO work_order_events (work_order_id, time, event, actor,"
                " from_state, to_state) VALUES (%s, %s, %s, %s, %s, %s)",
                (wo, time, event, actor, old, new))
    run_sql(url, "INSERT INTO work_orders (site_id, source, fault, origin, title, trade,"
            " priority, state, created_at, updated_at) VALUES ('tsite', 'desk', 'leak',"
            " 'request', 'Leak in B', 'plumbing', 'low', 'closed', '2025-01-01T09:00:00Z',"
            " '2025-01-01T09:00:00Z')")
    return wo


async def test_alarms_list_and_filters(client: httpx.AsyncClient, database_url: str) -> None:
    old = add_alarm(database_url, "a-elevator-1", "entrapment", "critical", "normal", False,
                    "2025-01-01T08:00:00Z")
    fire = add_alarm(database_url, "a-firepanel", "fire_alarm", "critical", "unack", True,
                     "2025-01-01T10:00:00Z")
    low = add_alarm(database_url, "b-elevator-1", "fault_code", "low", "ack", True,
                    "2025-01-01T11:00:00Z")
    back = add_alarm(database_url, "a-elevator-1", "entrapment", "high", "rtn_unack", False,
                     "2025-01-01T09:00:00Z")
    headers = await login(client, "manager")

    resp = await client.get("/api/v1/alarms", headers=headers)
    assert resp.status_code == 200
    # Not normal first, then active, then priority, then newest.
    assert [a["id"] for a in resp.json()] == [fire, low, back, old]
    first = resp.json()[0]
    assert (first["device"], first["type"], first["priority"], first["state"], first["active"]) \
        == ("a-firepanel", "fire_alarm", "critical", "unack", True)
    assert first["raised_at"] == "2025-01-01T10:00:00Z"
    assert first["acked_at"] is None and first["cleared_at"] is None

    open_ = await client.get("/api/v1/alarms?state=unack&state=rtn_unack", headers=headers)
    assert [a["id"] for a in open_.json()] == [fire, back]
    inactive = await client.get("/api/v1/alarms", params={"active": "false"}, headers=headers)
    assert [a["id"] for a in inactive.json()] == [back, old]
    for bad in ({"state": "bogus"}, {"active": "maybe"}, {"limit": "0"}, {"limit": "x"}):
        resp = await client.get("/api/v1/alarms", params=bad, headers=headers)
        assert resp.status_code == 422, bad


async def test_operator_acknowledges_once(client: httpx.AsyncClient, database_url: str) -> None:
    alarm = add_alarm(database_url, "a-firepanel", "fire_alarm", "critical", "unack", True,
                      "2025-01-01T10:00:00Z")
    headers = await login(client, "operator")

    resp = await client.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=headers)
    assert resp.status_code == 200
    body = resp.json()
    assert (body["state"], body["active"], body["acked_by"]) == ("ack", True, "operator")
    assert body["acked_at"] is not None
    rows = run_sql(database_url, "SELECT state, acked_by, closed_at FROM alarms WHERE id = %s",
                   (alarm,))
    assert rows == [("ack", "operator", None)]
    events = run_sql(database_url, "SELECT event, actor, detail FROM alarm_events"
                     " WHERE alarm_id = %s", (alarm,))
    assert events == [("acknowledged", "operator", {"from": "unack", "to": "ack"})]

    again = await client.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=headers)
    assert again.status_code == 409
    assert "ack" in again.json()["detail"]
    assert len(run_sql(database_url, "SELECT 1 FROM alarm_events")) == 1


async def test_acknowledging_a_cleared_alarm_closes_it(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alarm = add_alarm(database_url, "a-elevator-1", "entrapment", "critical", "rtn_unack", False,
                      "2025-01-01T10:00:00Z")
    headers = await login(client, "admin")
    resp = await client.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=headers)
    assert resp.status_code == 200
    assert resp.json()["state"] == "normal"
    assert resp.json()["closed_at"] is not None
    events = run_sql(database_url, "SELECT event, actor FROM alarm_events ORDER BY id")
    assert events == [("acknowledged", "admin"), ("closed", "admin")]
    assert (await client.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=headers)
            ).status_code == 409


async def test_acknowledge_is_refused_to_other_roles(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alarm = add_alarm(database_url, "a-firepanel", "fire_alarm", "critical", "unack", True,
                      "2025-01-01T10:00:00Z")
    for role in ("technician", "manager"):
        headers = await login(client, role)
        resp = await client.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=headers)
        assert resp.status_code == 403
        assert role in resp.json()["detail"]
    assert run_sql(database_url, "SELECT state FROM alarms") == [("unack",)]
    assert run_sql(database_url, "SELECT count(*) FROM alarm_events") == [(0,)]


async def test_unknown_and_malformed_alarm_ids(client: httpx.AsyncClient) -> None:
    headers = await login(client, "operator")
    resp = await client.post("/api/v1/alarms/999/acknowledge", headers=headers)
    assert resp.status_code == 404
    assert resp.json() == {"detail": "alarm 999 not found"}
    assert (await client.get("/api/v1/alarms/999", headers=headers)).status_code == 404
    for bad in ("abc", "0", "-1", "1.5", str(2**63), "9" * 40):
        resp = await client.post(f"/api/v1/alarms/{bad}/acknowledge", headers=headers)
        assert resp.status_code == 422, bad
    resp = await client.get("/api/v1/alarms/1/acknowledge", headers=headers)
    assert resp.status_code == 405


async def test_work_orders_list_and_detail(client: httpx.AsyncClient, database_url: str) -> None:
    alarm = add_alarm(database_url, "a-elevator-1", "entrapment", "critical", "ack", True,
                      "2025-01-01T10:00:00Z")
    wo = add_entrapment_order(database_url, alarm)
    headers = await login(client, "technician")

    resp = await client.get("/api/v1/work-orders", headers=headers)
    assert resp.status_code == 200
    assert [w["title"] for w in resp.json()] == ["Entrapment a-elevator-1", "Leak in B"]
    resp = await client.get("/api/v1/work-orders?state=open&state=accepted", headers=headers)
    [listed] = resp.json()
    assert listed["id"] == wo
    assert (listed["procedure_id"], listed["procedure_title"]) == (
        "elevator_entrapment", "电梯困人处理流程")
    assert (listed["state"], listed["priority"], listed["assignee"], listed["device"]) == (
        "accepted", "critical", "technician", "a-elevator-1")
    assert listed["created_at"] == "2025-01-01T10:00:00Z"
    assert listed["alarm_id"] == alarm

    detail = (await client.get(f"/api/v1/work-orders/{wo}", headers=headers)).json()
    assert [s["seq"] for s in detail["steps"]] == [1, 2]
    step1, step2 = detail["steps"]
    assert (step1["role"], step1["done_by"], step1["required"]) == ("operator", "operator", True)
    assert step1["action"].startswith("通过监控") and step1["action_en"] == "step 1"
    assert step1["done_at"] == "2025-01-01T10:01:00Z"
    assert (step2["done_at"], step2["done_by"]) == (None, None)
    assert [(e["event"], e["actor"], e["to_state"]) for e in detail["events"]] == [
        ("created", "rules", "open"), ("accepted", "technician", "accepted")]


async def test_unknown_and_malformed_work_orders(client: httpx.AsyncClient) -> None:
    headers = await login(client, "manager")
    resp = await client.get("/api/v1/work-orders/12345", headers=headers)
    assert resp.status_code == 404
    assert resp.json() == {"detail": "work order 12345 not found"}
    for path in ("/api/v1/work-orders/abc", f"/api/v1/work-orders/{2**64}",
                 "/api/v1/work-orders?state=nope", "/api/v1/work-orders?limit=100000"):
        assert (await client.get(path, headers=headers)).status_code == 422, path
