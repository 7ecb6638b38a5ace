"""Rosters people can change, against a real PostgreSQL (issue 16 item 2): the demo dispatch
file seeds the rosters; a manager replaces the plumbing roster's shifts and adds a shift swap
through the API; the dispatcher's reload (what its every-10-s job runs) puts the substitute
on call without a restart; a restart with the same file keeps the edited roster; a cancelled
swap ends; an operator may not edit; every change is recorded (who, when, what)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from api.app import create_app
from facility.db.registry import sync_site
from facility.procedures import load_procedures
from facility.site import Site, load_site
from facility.users import ensure_demo_users
from rules.dispatch.config import load_dispatch
from rules.dispatch.directory import load_rosters, refresh_on_call, sync_directory
from rules.dispatch.roster import assignee
from tests.integration.api_support import PASSWORD, ROOT, api_client, login

API = "/api/v1"
ALL_DAY = {"name": "全天 all day", "days": [1, 2, 3, 4, 5, 6, 7], "start": "00:00",
           "end": "00:00", "on_call": ["tech-plumbing-1"]}


@pytest.fixture
def site() -> Site:
    return load_site(ROOT / "sites" / "demo.yaml")


@pytest.fixture
async def client(database_url: str, site: Site) -> AsyncIterator[httpx.AsyncClient]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        sync_site(conn, site)
        ensure_demo_users(conn, PASSWORD)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def test_edits_and_swaps_take_effect_without_a_restart_and_survive_one(
    client: httpx.AsyncClient, database_url: str, site: Site, tmp_path: Path,
) -> None:
    dispatch = load_dispatch(ROOT / "sites" / "demo-dispatch.yaml", site,
                             load_procedures(ROOT / "procedures"))
    config = dispatch.config
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await sync_directory(conn, "demo", config)
        manager, operator = [await login(client, r) for r in ("manager", "operator")]
        listed = (await client.get(f"{API}/rosters?site=demo", headers=manager)).json()
        plumbing = next(r for r in listed if r["roster"] == "plumbing")
        assert plumbing["edited_by"] is None and len(plumbing["shifts"]) == 2

        body = {"shifts": [ALL_DAY], "backup": ["supervisor-engineering"]}
        assert (await client.put(f"{API}/rosters/demo/plumbing", headers=operator,
                                 json=body)).status_code == 403
        bad = await client.put(f"{API}/rosters/demo/plumbing", headers=manager,
                               json={"shifts": [ALL_DAY | {"on_call": ["nobody"]}]})
        assert bad.status_code == 400 and "nobody" in bad.json()["detail"]
        resp = await client.put(f"{API}/rosters/demo/plumbing", headers=manager, json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["edited_by"] == "manager"
        assert resp.json()["channels"] == ["wecom-engineering"]  # kept

        live = await load_rosters(conn, "demo", config, now)  # the dispatcher's reload
        assert [s.name for s in live.rosters["plumbing"].shifts] == ["全天 all day"]
        oc = assignee(live, "plumbing", now)
        assert oc is not None and oc.username == "tech-plumbing-1"

        swap = await client.post(f"{API}/rosters/demo/plumbing/swaps", headers=manager, json={
            "original": "tech-plumbing-1", "substitute": "technician",
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=8)).isoformat(), "reason": "病假 sick leave"})
        assert swap.status_code == 201, swap.text
        live = await load_rosters(conn, "demo", config, now)
        oc = assignee(live, "plumbing", now)
        assert oc is not None and oc.username == "technician"
        assert oc.shift == "全天 all day (swap for tech-plumbing-1)"
        await refresh_on_call(conn, "demo", live, now)
        shown = (await client.get(f"{API}/roster?site=demo&name=plumbing",
                                  headers=operator)).json()
        assert shown[0]["on_call"][0]["username"] == "technician"

        # a restart with the same dispatch file keeps the edit (and the swap)
        await sync_directory(conn, "demo", config)
        live = await load_rosters(conn, "demo", config, now)
        assert [s.name for s in live.rosters["plumbing"].shifts] == ["全天 all day"]
        assert [s.name for s in live.rosters["elevator"].shifts] == ["白班 day", "夜班 night"]
        oc = assignee(live, "plumbing", now)
        assert oc is not None and oc.username == "technician"

        swap_id = swap.json()["id"]
        resp = await client.post(f"{API}/roster-swaps/{swap_id}/cancel", headers=manager)
        assert resp.status_code == 200 and resp.json()["cancelled_by"] == "manager"
        assert (await client.post(f"{API}/roster-swaps/{swap_id}/cancel",
                                  headers=manager)).status_code == 409
        live = await load_rosters(conn, "demo", config, now)
        oc = assignee(live, "plumbing", now)
        assert oc is not None and oc.username == "tech-plumbing-1"

    changes = (await client.get(f"{API}/roster-changes", headers=manager)).json()
    assert [(c["action"], c["actor"], c["target"]) for c in changes] == [
        ("roster.swap_cancel", "manager", "demo/plumbing"),
        ("roster.swap", "manager", "demo/plumbing"),
        ("roster.update", "manager", "demo/plumbing")]
    assert changes[2]["detail"]["before"]["shifts"][0]["name"] == "工作日 weekdays"
    assert changes[1]["detail"]["reason"] == "病假 sick leave"
