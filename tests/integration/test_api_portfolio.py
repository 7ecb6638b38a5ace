"""The routes the portfolio board and the device page call, on a small estate synced by the
registry: /sites counts open alarms by priority per building and names buildings from the
registry; /devices searches by part of a name and lists only the devices with problems;
/alarms and /work-orders filter by building; open orders split into faults (newest first)
and planned maintenance (due first); a device's points carry display names and enum labels
from the profile."""

from __future__ import annotations

from pathlib import Path

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_entrapment, seed_site


async def test_portfolio_routes(database_url: str, tmp_path: Path) -> None:
    site = seed_site(database_url, tmp_path)
    alarm_id, wo_id = await seed_entrapment(database_url, "a-elevator-1")
    run_sql(database_url, "INSERT INTO device_status (device_id, state, reason, time)"
            " SELECT id, 'offline', 'timeout', now() FROM devices WHERE name = 'b-elevator-1'")
    run_sql(database_url,
            "INSERT INTO work_orders (site_id, device_id, source, fault, origin, title, trade,"
            " priority, state, created_at, updated_at, due_at) SELECT 'tsite', id, name,"
            " 'pm', 'schedule', 'PM ' || g, 'elevator', 'low', 'open', now(), now(),"
            " now() + g * interval '1 day' FROM devices, generate_series(3, 1, -1) g"
            " WHERE name = 'b-elevator-1'")
    app = create_app(database_url, site=site)
    async with api_client(app) as client:
        auth = await login(client, "operator")
        sites = (await client.get("/api/v1/sites", headers=auth)).json()
        a, b = sites[0]["buildings"]
        assert (a["name"], a["open_alarms"], a["critical"], a["high"]) == ("Building A", 1, 1, 0)
        assert (b["name"], b["offline"], b["open_alarms"]) == ("b", 1, 0)

        found = (await client.get("/api/v1/devices?q=ELEVATOR-1&limit=5", headers=auth)).json()
        assert [d["name"] for d in found] == ["a-elevator-1", "b-elevator-1"]
        assert (await client.get("/api/v1/devices?q=_", headers=auth)).json() == []
        problems = (await client.get("/api/v1/devices?problems=true&values=false",
                                     headers=auth)).json()
        assert sorted(d["name"] for d in problems) == ["a-elevator-1", "b-elevator-1"]
        assert [len(d["open_alarms"]) for d in problems] == [1, 0]
        assert all(d["values"] == {} for d in problems)

        in_a = (await client.get("/api/v1/alarms?building=a", headers=auth)).json()
        assert [x["id"] for x in in_a] == [alarm_id] and in_a[0]["trade"] == "elevator"
        assert (await client.get("/api/v1/alarms?building=b", headers=auth)).json() == []

        faults = (await client.get("/api/v1/work-orders?open=true&kind=fault",
                                   headers=auth)).json()
        assert [w["id"] for w in faults] == [wo_id]
        planned = (await client.get("/api/v1/work-orders?open=true&kind=maintenance",
                                    headers=auth)).json()
        assert [w["title"] for w in planned] == ["PM 1", "PM 2", "PM 3"]
        by_b = (await client.get("/api/v1/work-orders?building=b", headers=auth)).json()
        assert {w["origin"] for w in by_b} == {"schedule"}

        points = (await client.get("/api/v1/devices/a-elevator-1/points", headers=auth)).json()
        fault = next(p for p in points if p["name"] == "fault_code")
        assert (fault["label"], fault["label_en"]) == ("故障代码", "Fault code")
        assert fault["enum_labels"]["3"] == {"zh": "安全回路动作", "en": "safety circuit"}
        assert points[0]["name"] == "moving"  # profile order
