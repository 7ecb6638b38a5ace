"""The authorisation matrix's scope axis (issue 23): two estates in one database, ``tsite``
(the matrix's) and ``usite`` (another estate: building x, lift x-elevator-1, with its own alarm,
work order, photo, notice, roster and swap). Every row of test_api_authz.MATRIX (so every
/api/v1 route, generated from app.routes) is called by a user of each role whose scope is
tsite only, with its ids, site and device turned into usite's: where the row names one of
usite's things the answer is 404 (as for what does not exist; 422 only for a body refused
before any data is read), and no answer to them ever holds a name of usite. The same GETs by a
monitoring-centre admin (every site) find usite's things, so the 404s are the scope's doing.
The live stream of a tsite user carries no usite event, and a user scoped to one building
sees that building's lift and not its neighbour's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from facility.db.registry import sync_site
from facility.site import load_site
from facility.users import create_user
from tests.integration.api_support import (
    PASSWORD,
    ROOT,
    api_client,
    login,
    run_sql,
    seed_entrapment,
    seed_site,
)
from tests.integration.stream_support import TIMEOUT_S, Reader
from tests.integration.stream_support import record as _record
from tests.integration.test_api_authz import MATRIX, ROLES
from tests.integration.test_api_stream import base_url

__all__ = ["base_url"]  # the stream fixture, shared

USITE_YAML = """
site: usite
name: Other Estate
gateways: [{id: gw-x}]
buildings:
  - id: x
    name: Building X
    gateway: gw-x
    devices:
      - {id: x-elevator-1, type: elevator, profile: elevator,
         address: {protocol: modbus, port: 15041}}
"""
MARKERS = ("usite", "x-elevator-1", "Building X", "Other Estate")
# Routes about the staff, the audit log and the documented procedures are the centre's, not
# an estate's: the admin who manages users sees every user's scope there.
GLOBAL = ("/users", "/audit", "/auth/locks", "/procedures", "/me", "/auth/sign-out")


def seed_other_estate(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "usite.yaml"
    path.write_text(USITE_YAML, encoding="utf-8")
    site = load_site(path, profiles_dir=ROOT / "profiles")
    with psycopg.connect(database_url) as conn:
        sync_site(conn, site)


def scoped_user(database_url: str, username: str, role: str, entries: list[str]) -> None:
    with psycopg.connect(database_url) as conn:
        user_id = create_user(conn, username, PASSWORD, role)
        with conn.transaction():
            conn.execute("UPDATE users SET all_sites = false WHERE id = %s", (user_id,))
            for entry in entries:
                site, _, building = entry.partition("/")
                conn.execute("INSERT INTO user_scopes (user_id, site_id, building)"
                             " VALUES (%s, %s, %s)", (user_id, site, building))


def _foreign_things(database_url: str, wo: int) -> dict[str, int]:
    """usite's ledger entry, photo, notice, roster, swap and handover (its alarm and order: from
    seed_entrapment)."""
    [(attachment,)] = run_sql(
        database_url, "INSERT INTO work_order_attachments (work_order_id, stage, filename,"
        " content_type, size_bytes, sha256, content, uploaded_by) VALUES (%s, 'before',"
        " 'x.png', 'image/png', 3, encode(sha256('abc'), 'hex'), 'abc', 'technician')"
        " RETURNING id", (wo,))
    [(notice,)] = run_sql(
        database_url, "INSERT INTO resident_notices (site_id, building, kind, title, since,"
        " state) VALUES ('usite', 'x', 'water', 'Other Estate water', now(), 'draft')"
        " RETURNING id")
    run_sql(database_url, "INSERT INTO device_assets (device, contractor, inspection_due)"
            " VALUES ('x-elevator-1', 'Other Estate lifts', current_date)")
    run_sql(database_url, "INSERT INTO dispatch_rosters (site_id, roster, timezone, body)"
            " VALUES ('usite', 'plumbing', 'Asia/Shanghai', '{\"shifts\": []}')")
    [(swap,)] = run_sql(
        database_url, "INSERT INTO roster_swaps (site_id, roster, original, substitute,"
        " starts_at, ends_at, reason, created_by) VALUES ('usite', 'plumbing', 'a', 'b',"
        " now(), now() + interval '1 day', '', 'admin') RETURNING id")
    [(handover,)] = run_sql(
        database_url, "INSERT INTO shift_handovers (site_id, shift, written_by, notes)"
        " VALUES ('usite', 'day', 'someone', 'Other Estate 水泵') RETURNING id")
    return {"attachment": attachment, "notice": notice, "swap": swap, "handover": handover}


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    seed_other_estate(database_url, tmp_path)
    for role in ROLES:
        scoped_user(database_url, f"t-{role}", role, ["tsite"])
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


def _foreign(template: str, body: dict[str, Any] | None,
             ids: dict[str, int]) -> tuple[str, dict[str, Any] | None, bool]:
    """The row turned to usite's things: (path, body, names one of them)."""
    text = template + json.dumps(body, ensure_ascii=False)
    names = "{" in template or "tsite" in text or "a-elevator-1" in text
    path = template.format(**ids).replace("tsite", "usite").replace("a-elevator-1",
                                                                     "x-elevator-1")
    if body is not None:
        raw = json.dumps(body, ensure_ascii=False).replace("tsite", "usite")
        body = json.loads(raw.replace('"building": "a"', '"building": "x"'))
    return path, body, names


async def test_no_route_answers_about_another_estate(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alarm, wo = await seed_entrapment(database_url, device="x-elevator-1")
    run_sql(database_url, "UPDATE work_orders SET state = 'assigned', assignee = 't-technician'"
            " WHERE id = %s", (wo,))
    ids = {"alarm": alarm, "wo": wo, **_foreign_things(database_url, wo)}
    tokens = {role: await login(client, f"t-{role}") for role in ROLES}
    wrong: list[str] = []
    for method, template, row_body, allowed in MATRIX:
        if template.startswith(("/stream", "/auth/sign-out")):
            continue  # the stream: below; signing out would end the sweep
        path, body, names = _foreign(template, row_body, ids)
        for role in ROLES:
            resp = await client.request(method, "/api/v1" + path, json=body,
                                        headers=tokens[role])
            status, text = resp.status_code, resp.text
            if role not in allowed:  # refused by role; 404 first for usite's order
                ok = status == 403 or (names and status == 404)
            elif names:
                ok = status == 404 or (status == 422 and "errors" in resp.json())
            else:
                ok = status < 400 or status in (404, 409, 422)
            leaks = status != 404 and not path.startswith(GLOBAL) and any(
                m in text for m in MARKERS)
            if not ok or leaks:
                wrong.append(f"{role} {method} {path}: {status} {text[:120]}")
    assert wrong == []


async def test_the_centre_sees_what_the_estate_user_was_refused(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """The control: usite's things exist, and an admin of every site reads them."""
    alarm, wo = await seed_entrapment(database_url, device="x-elevator-1")
    ids = {"alarm": alarm, "wo": wo, **_foreign_things(database_url, wo)}
    admin = await login(client, "admin")
    missing, shown = [], set()
    for method, template, row_body, _allowed in MATRIX:
        if method != "GET" or template.startswith(("/stream", "/me")):
            continue
        path, _body, names = _foreign(template, row_body, ids)
        resp = await client.get("/api/v1" + path, headers=admin)
        if names and resp.status_code == 404:
            missing.append(path)
        if any(m in resp.text for m in MARKERS):
            shown.add(path.split("?")[0])
    assert missing == []
    assert {"/sites", "/devices", "/alarms", "/work-orders", "/assets", "/assets/export.csv",
            "/assets/inspections-due", "/notices", "/rosters", "/roster-swaps", "/roster",
            "/handovers", "/handovers/draft"} <= shown


async def test_a_building_scope_sees_its_building_only(
    client: httpx.AsyncClient, database_url: str
) -> None:
    scoped_user(database_url, "b-technician", "technician", ["tsite/b"])
    a_alarm, a_wo = await seed_entrapment(database_url, device="a-elevator-1")
    b_alarm, b_wo = await seed_entrapment(database_url, device="b-elevator-1")
    me = await login(client, "b-technician")
    assert (await client.get(f"/api/v1/alarms/{a_alarm}", headers=me)).status_code == 404
    in_chinese = await client.get(f"/api/v1/alarms/{a_alarm}",
                                  headers={**me, "Accept-Language": "zh-CN,zh;q=0.9"})
    assert in_chinese.json() == {"detail": f"未找到报警 {a_alarm}"}  # as for a missing one
    assert (await client.get(f"/api/v1/work-orders/{a_wo}", headers=me)).status_code == 404
    assert (await client.get("/api/v1/devices/a-elevator-1", headers=me)).status_code == 404
    assert (await client.get(f"/api/v1/alarms/{b_alarm}", headers=me)).status_code == 200
    alarms = (await client.get("/api/v1/alarms", headers=me)).json()
    assert [a["id"] for a in alarms] == [b_alarm]
    orders = (await client.get("/api/v1/work-orders", headers=me)).json()
    assert [o["id"] for o in orders] == [b_wo]
    devices = (await client.get("/api/v1/devices", headers=me)).json()
    assert [d["name"] for d in devices] == ["b-elevator-1"]
    sites = (await client.get("/api/v1/sites", headers=me)).json()
    assert [[b["id"] for b in s["buildings"]] for s in sites] == [["b"]]
    # a site-wide report needs the whole site
    resp = await client.get("/api/v1/reports/monthly?site=tsite&month=2025-03", headers=me)
    assert resp.status_code in (403, 404)


async def test_the_live_stream_carries_only_the_users_estate(
    base_url: str, database_url: str, tmp_path: Path
) -> None:
    seed_other_estate(database_url, tmp_path)
    scoped_user(database_url, "t-technician", "technician", ["tsite"])
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as http:
        resp = await http.post("/api/v1/auth/token",
                               data={"username": "t-technician", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        async with http.stream("GET", "/api/v1/stream", headers=headers) as stream:
            reader = Reader(stream)
            assert (await reader.event())["event"] == "ready"
            await _record_other(database_url)
            [mine] = await _record(database_url, "alarm.raised")
            got = await reader.event()
            assert int(got["id"]) == mine and got["data"]["device"] == "a-elevator-1"
        async with http.stream("GET", "/api/v1/stream?after=0", headers=headers) as stream:
            reader = Reader(stream)
            assert (await reader.event())["event"] == "ready"
            assert int((await reader.event())["id"]) == mine  # usite's is skipped on replay


async def _record_other(database_url: str) -> None:
    """An alarm event of usite's lift (its id is smaller than the tsite one recorded next)."""
    from datetime import UTC, datetime

    from facility import events
    from facility.messages import AlarmEvent

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        async with conn.transaction():
            await events.record(conn, "usite", [AlarmEvent(
                ts=datetime.now(UTC), event="alarm.raised", alarm_id=99,
                device="x-elevator-1")])


async def test_a_stream_catching_up_from_the_database_reads_its_estate_only(
    database_url: str, tmp_path: Path
) -> None:
    """The read of a stream resuming from before what the hub keeps in memory."""
    from facility import events
    from facility.scope import Scope

    seed_site(database_url, tmp_path)
    seed_other_estate(database_url, tmp_path)
    for _ in range(3):
        await _record_other(database_url)
    [mine] = await _record(database_url, "alarm.raised")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await events.since(conn, 0, until_id=mine, scope=Scope.of(["tsite"]))
        assert [r[0] for r in rows] == [mine]
        rows = await events.since(conn, 0, until_id=mine, scope=Scope.of(["usite/x"]))
        assert len(rows) == 3 and all(r[2]["device"] == "x-elevator-1" for r in rows)
        assert len(await events.since(conn, 0, until_id=mine)) == 4  # the centre: all
