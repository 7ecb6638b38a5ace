"""The asset ledger through the API against a real PostgreSQL (issue 16 item 1): a manager
writes a device's entry and imports a CSV (a bad line refuses the whole file, with its line
number), an operator reads it but may not write, the device's history shows its alarm and its
work order with time spent and the parts' cost, the statutory inspection falling due is
listed, and every change is in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_entrapment, seed_site

API = "/api/v1"
ENTRY = {"model": "3000+ MRL", "manufacturer": "通力 KONE", "serial_number": "K-123456",
         "registration_code": "31103301002012080012", "installed_on": "2012-08-01",
         "warranty_until": "2014-08-01", "contractor": "某某电梯维保有限公司",
         "contractor_phone": "400-800-1234", "inspection_due": None, "notes": ""}


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def test_a_manager_keeps_the_ledger_and_an_operator_reads_it(
    client: httpx.AsyncClient,
) -> None:
    manager, operator = [await login(client, r) for r in ("manager", "operator")]
    due = (date.today() + timedelta(days=20)).isoformat()
    resp = await client.put(f"{API}/assets/a-elevator-1", headers=manager,
                            json=ENTRY | {"inspection_due": due})
    assert resp.status_code == 200, resp.text
    assert resp.json()["registration_code"] == "31103301002012080012"
    assert resp.json()["updated_by"] == "manager"
    refused = await client.put(f"{API}/assets/a-elevator-1", headers=operator, json=ENTRY)
    assert refused.status_code == 403
    assert (await client.put(f"{API}/assets/nope", headers=manager, json=ENTRY)).status_code \
        == 404
    listed = (await client.get(f"{API}/assets", headers=operator)).json()
    assert [a["device"] for a in listed] == ["a-elevator-1"]
    assert listed[0]["contractor_phone"] == "400-800-1234"
    due_list = (await client.get(f"{API}/assets/inspections-due?within_days=30",
                                 headers=operator)).json()
    assert [(d["device"], d["days_left"], d["overdue"]) for d in due_list] == [
        ("a-elevator-1", 20, False)]
    assert (await client.get(f"{API}/assets/inspections-due?within_days=10",
                             headers=operator)).json() == []
    admin = await login(client, "admin")
    log = (await client.get(f"{API}/audit?action=asset", headers=admin)).json()
    assert log[0]["action"] == "asset.update" and log[0]["actor"] == "manager"
    assert "registration_code" in log[0]["detail"]["fields"]


async def test_csv_import_is_all_or_nothing_with_line_numbers(
    client: httpx.AsyncClient,
) -> None:
    manager = await login(client, "manager")
    headers = manager | {"Content-Type": "text/csv"}
    bad = ("device,model,installed_on,inspection_due\n"
           "a-elevator-1,MRL,2012-08-01,2027-01-15\n"
           "b-elevator-1,MRL,2012-13-01,\n"
           "x-unknown,MRL,,\n")
    resp = await client.post(f"{API}/assets/import", headers=headers, content=bad.encode())
    assert resp.status_code == 422
    assert "line 3: installed_on" in resp.json()["detail"]
    assert "line 4: device 'x-unknown'" in resp.json()["detail"]
    assert (await client.get(f"{API}/assets", headers=manager)).json() == []
    unknown_column = "device,colour\na-elevator-1,red\n"
    resp = await client.post(f"{API}/assets/import", headers=headers,
                             content=unknown_column.encode())
    assert resp.status_code == 422 and "unknown columns colour" in resp.json()["detail"]
    good = ("\ufeffdevice,model,manufacturer,registration_code,inspection_due,contractor\n"
            "a-elevator-1,MRL,KONE,3110,2027-01-15,维保A\n"
            "b-elevator-1,MRL,Otis,3111,,维保B\n")
    resp = await client.post(f"{API}/assets/import", headers=headers, content=good.encode())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"imported": 2, "devices": ["a-elevator-1", "b-elevator-1"]}
    rows = (await client.get(f"{API}/assets", headers=manager)).json()
    assert [(a["device"], a["manufacturer"], a["inspection_due"]) for a in rows] == [
        ("a-elevator-1", "KONE", "2027-01-15"), ("b-elevator-1", "Otis", None)]
    exported = (await client.get(f"{API}/assets/export.csv", headers=manager)).text
    assert exported.splitlines()[1].startswith("a-elevator-1,MRL,KONE,,3110,")
    refused = await client.post(f"{API}/assets/import", headers=(await login(
        client, "technician")) | {"Content-Type": "text/csv"}, content=good.encode())
    assert refused.status_code == 403


async def test_history_shows_alarms_orders_time_spent_and_parts_cost(
    client: httpx.AsyncClient, database_url: str,
) -> None:
    alarm_id, wo = await seed_entrapment(database_url)
    operator, tech = [await login(client, r) for r in ("operator", "technician")]
    resp = await client.post(f"{API}/work-orders/{wo}/assign", headers=operator,
                             json={"assignee": "technician"})
    assert resp.status_code == 200, resp.text
    for to in ("accepted", "on_site"):
        resp = await client.post(f"{API}/work-orders/{wo}/transition", headers=tech,
                                 json={"to": to})
        assert resp.status_code == 200, resp.text
    resp = await client.post(f"{API}/work-orders/{wo}/parts", headers=tech,
                             json={"part": "门锁触点 door contact", "quantity": 2,
                                   "unit_cost": "35.50"})
    assert resp.status_code == 201, resp.text
    assert (await client.post(f"{API}/work-orders/{wo}/parts", headers=await login(
        client, "manager"), json={"part": "x", "quantity": 1, "unit_cost": 1})).status_code \
        == 403
    bad = await client.post(f"{API}/work-orders/{wo}/parts", headers=tech,
                            json={"part": "x", "quantity": 0, "unit_cost": 1})
    assert bad.status_code == 422
    run_sql(database_url, "UPDATE work_orders SET state = 'resolved', resolved_at ="
            " (SELECT min(time) FROM work_order_events WHERE work_order_id = %s AND"
            " event = 'arrived') + interval '25 minutes' WHERE id = %s", (wo, wo))
    detail = (await client.get(f"{API}/assets/a-elevator-1", headers=operator)).json()
    assert detail["asset"] is None
    assert [a["id"] for a in detail["alarms"]] == [alarm_id]
    [order] = detail["work_orders"]
    assert order["id"] == wo and order["time_spent_s"] == pytest.approx(1500, abs=1)
    assert float(order["parts_cost"]) == 71.0
    assert order["parts"] == ["门锁触点 door contact x2.00"]
    manager = await login(client, "manager")
    month = date.today().strftime("%Y-%m")
    report = (await client.get(f"{API}/reports/monthly?site=tsite&month={month}&tz=UTC",
                               headers=manager)).json()
    assert report["by_device"] == [{"device": "a-elevator-1", "failures": 1,
                                    "repeat_failures": 0, "parts_cost": 71.0}]
