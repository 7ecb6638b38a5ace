"""The authorisation matrix: every /api/v1 route, called by each role (operator, technician,
manager, admin) and without a token, against a real PostgreSQL with an entrapment alarm and
its work order (assigned to the demo technician). A role the route denies gets 403 with a
JSON message; a role it allows never gets 401 or 403 (it may get 404, 409 or 422 when the
data does not allow the action, e.g. acknowledging an alarm twice). Rows run in table order,
so state changes of earlier rows are expected by later ones.

The matrix is checked against the app's own routes (``app.routes``): a route with no row
here (a new route nobody gave a role rule), or a row that matches no route, fails
``test_every_route_has_a_row``. Public routes (health, sign-in, the page shells, the docs)
are listed apart and answered without a token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_entrapment, seed_site

ROLES = ("operator", "technician", "manager", "admin")
ALL = frozenset(ROLES)
DESK = frozenset({"operator", "manager", "admin"})
ACK = frozenset({"operator", "admin"})
MGR = frozenset({"manager", "admin"})
ADMIN = frozenset({"admin"})
FIELD = frozenset({"operator", "technician", "admin"})

REQUEST = {"site": "tsite", "building": "a", "category": "leak", "trade": "plumbing",
           "title": "Leak in 3-1201", "reporter_name": "王先生", "reporter_phone": "13800000000"}

# (method, path, json body, roles allowed); {alarm}, {wo}, {notice}, {attachment}, {swap} and
# {handover} are filled in (test_api_scope runs the same rows against another estate's objects).
MATRIX: list[tuple[str, str, dict[str, Any] | None, frozenset[str]]] = [
    ("GET", "/me", None, ALL),
    ("PUT", "/me/language", {"language": "zh-CN"}, ALL),
    ("GET", "/sites", None, ALL),
    ("GET", "/devices", None, ALL),
    ("GET", "/devices/a-elevator-1", None, ALL),
    ("GET", "/devices/a-elevator-1/points", None, ALL),
    ("GET", "/devices/a-elevator-1/status-history", None, ALL),
    ("GET", "/devices/a-elevator-1/telemetry?point=car_floor&range=day", None, ALL),
    ("GET", "/alarms", None, ALL),
    ("GET", "/alarms/{alarm}", None, ALL),
    ("GET", "/work-orders", None, ALL),
    ("GET", "/work-orders/{wo}", None, ALL),
    ("GET", "/procedures", None, ALL),
    ("GET", "/procedures/elevator_entrapment", None, ALL),
    ("GET", "/roster", None, ALL),
    ("POST", "/alarms/{alarm}/shelve", {"minutes": 30, "comment": "camera confirms"}, ACK),
    ("POST", "/alarms/{alarm}/unshelve", {}, ACK),
    ("POST", "/alarms/{alarm}/acknowledge", {"comment": "on it"}, ACK),
    ("POST", "/alarms/{alarm}/out-of-service", {"comment": "lift under repair"}, MGR),
    ("POST", "/alarms/{alarm}/return-to-service", {}, MGR),
    ("POST", "/work-orders", REQUEST, DESK),
    ("POST", "/work-orders/{wo}/assign", {"assignee": "technician"}, DESK),
    ("POST", "/work-orders/{wo}/steps/1", {"note": "floor 7, two people"}, FIELD),
    ("POST", "/work-orders/{wo}/transition", {"to": "accepted"},
     frozenset({"technician", "admin"})),
    ("POST", "/work-orders/{wo}/transition", {"to": "on_site"},
     frozenset({"technician", "admin"})),
    ("POST", "/work-orders/{wo}/transition", {"to": "cancelled", "note": "false alarm"}, DESK),
    ("GET", "/reports/monthly?site=tsite&month=2025-03", None, MGR),
    ("GET", "/reports/monthly.csv?site=tsite&month=2025-03", None, MGR),
    ("GET", "/users", None, ADMIN),
    ("POST", "/users", {"username": "tech2", "password": "long enough pw", "role": "technician",
                        "trade": "elevator"}, ADMIN),
    ("PATCH", "/users/tech2", {"display_name": "Li Gong"}, ADMIN),
    ("GET", "/audit?action=user", None, ADMIN),
    ("GET", "/auth/locks", None, ADMIN),
    ("DELETE", "/auth/locks?kind=user&key=nobody", None, ADMIN),
    # issue 16: the asset ledger, parts on orders, notices to residents
    ("GET", "/assets", None, ALL),
    ("GET", "/assets/export.csv", None, ALL),
    ("GET", "/assets/inspections-due", None, ALL),
    ("GET", "/assets/a-elevator-1", None, ALL),
    ("PUT", "/assets/a-elevator-1", {"contractor": "维保A"}, MGR),
    ("POST", "/assets/import", None, MGR),  # no CSV: 422 for those allowed
    ("GET", "/work-orders/{wo}/parts", None, ALL),
    ("POST", "/work-orders/{wo}/parts", {"part": "fuse", "quantity": 1, "unit_cost": 3}, FIELD),
    ("POST", "/notices", {"site": "tsite", "kind": "water", "title": "停水通知",
                          "since": "2026-05-01T08:00:00Z"}, DESK),
    ("GET", "/notices", None, DESK),
    ("GET", "/notices/{notice}", None, DESK),
    ("PATCH", "/notices/{notice}", {"body": "明早恢复"}, DESK),
    ("POST", "/notices/{notice}/publish", None, DESK),
    ("POST", "/notices/{notice}/close", None, DESK),
    ("GET", "/work-orders/{wo}/attachments", None, ALL),
    ("POST", "/work-orders/{wo}/attachments", None, FIELD),  # no file: 422 for those allowed
    ("GET", "/attachments/{attachment}", None, ALL),  # none yet: 404
    ("GET", "/reports/trend?site=tsite&month=2025-03", None, MGR),
    ("GET", "/reports/monthly.pdf?site=tsite&month=2025-03", None, MGR),
    ("GET", "/rosters", None, MGR),
    ("PUT", "/rosters/tsite/plumbing", {"shifts": []}, MGR),  # no such roster here: 404
    ("POST", "/rosters/tsite/plumbing/swaps", {"original": "a", "substitute": "b",
     "starts_at": "2026-05-01T00:00:00Z", "ends_at": "2026-05-02T00:00:00Z"}, MGR),
    ("GET", "/roster-swaps", None, MGR),
    ("POST", "/roster-swaps/{swap}/cancel", None, MGR),
    ("GET", "/roster-changes", None, MGR),
    # issue 23: the shift handover log
    ("GET", "/handovers/draft?site=tsite", None, DESK),
    ("POST", "/handovers", {"site": "tsite", "shift": "白班 → 夜班", "notes": "3号楼水泵异响"},
     DESK),
    ("POST", "/handovers/{handover}/acknowledge", {"note": "收到"}, DESK),
    ("GET", "/handovers?q=水泵", None, DESK),
    ("GET", "/handovers/{handover}", None, DESK),
    ("GET", "/stream?after=0", None, ALL),  # checked without reading the endless body
    ("POST", "/auth/sign-out", None, ALL),  # last: it revokes each role's token
]

# Answered without a token: (method, path).
PUBLIC: list[tuple[str, str]] = [
    ("GET", "/api/v1/health"),
    ("POST", "/api/v1/auth/token"),  # signing in (checked by test_api and test_api_security)
    ("GET", "/"),
    ("GET", "/devices/a-elevator-1"),
    ("GET", "/tech"),
    ("GET", "/desk"),
    ("GET", "/reports"),
    ("GET", "/assets"),
    ("GET", "/notices"),
    ("GET", "/rosters"),
    ("GET", "/public/tsite/notices"),  # the published notices, read-only (issue 16)
    ("GET", "/work-orders/1/print"),  # the page shell: the order itself needs a token
    ("GET", "/users"),  # issue 23: the page shells of the staff accounts and the handover log
    ("GET", "/handover"),
    ("GET", "/i18n/zh-CN.json"),  # the pages' strings, needed before signing in
    ("GET", "/i18n/en.json"),
    ("GET", "/sw.js"),  # the technician page offline: its service worker and app manifest
    ("GET", "/manifest.webmanifest"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
]
MOUNTS = frozenset({"/static", "/static/swagger"})  # files, no data


def test_every_route_has_a_row(tmp_path: Path) -> None:
    """Generated from the app: each method of each route is covered by a matrix row (or is
    public), and each row reaches a route."""
    app = create_app("postgresql://unused/unused")
    rows = [(m, "/api/v1" + p.split("?")[0]) for m, p, _b, _r in MATRIX] + PUBLIC
    samples = {"alarm": 1, "wo": 1, "notice": 1, "attachment": 1, "swap": 1, "handover": 1}
    used: set[tuple[str, str]] = set()
    missing: list[str] = []
    for route in iter_route_contexts(app.routes):  # included routers flattened, with prefixes
        if isinstance(route.original_route, Mount):
            assert route.path in MOUNTS, f"mount {route.path} is not in the matrix"
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            hits = {(m, p) for m, p in rows
                    if m == method and route.path_regex.match(p.format(**samples))}
            used |= hits
            if not hits:
                missing.append(f"{method} {route.path}")
    assert missing == [], "routes without a role rule in MATRIX (or PUBLIC)"
    assert set(rows) - used == set(), "rows that match no route"


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None,
    headers: dict[str, str],
) -> int:
    if path.startswith("/stream"):
        # httpx's ASGI transport would wait for the endless stream: only auth is decided
        # before the body starts, so a denied call answers at once; see test_api_stream.
        return 0
    resp = await client.request(method, "/api/v1" + path, json=body, headers=headers)
    if resp.status_code in (401, 403):
        assert isinstance(resp.json()["detail"], str)
    assert resp.status_code < 500, (method, path, resp.status_code, resp.text)
    return resp.status_code


async def test_every_route_enforces_its_roles(
    client: httpx.AsyncClient, database_url: str
) -> None:
    alarm, wo = await seed_entrapment(database_url)
    run_sql(database_url, "UPDATE work_orders SET state = 'assigned', assignee = 'technician'"
            " WHERE id = %s", (wo,))
    tokens = {role: await login(client, role) for role in ROLES}
    wrong: list[str] = []
    for method, template, body, allowed in MATRIX:
        path = template.format(alarm=alarm, wo=wo, notice=1, attachment=1, swap=1,
                                 handover=1)
        if path.startswith("/stream"):
            continue
        for role in ROLES:
            status = await _call(client, method, path, body, tokens[role])
            denied = status == 403
            if denied == (role in allowed) or status == 401:
                wrong.append(f"{role} {method} {path}: {status}")
        anonymous = await client.request(method, "/api/v1" + path, json=body)
        if anonymous.status_code != 401:
            wrong.append(f"anonymous {method} {path}: {anonymous.status_code}")
    assert wrong == []


async def test_public_routes_answer_without_a_token(client: httpx.AsyncClient) -> None:
    for method, path in PUBLIC:
        resp = await client.request(method, path)
        expected = 422 if path.endswith("/auth/token") else 200  # a form without fields
        assert resp.status_code == expected, (method, path, resp.status_code)


async def test_allowed_calls_did_their_work(client: httpx.AsyncClient, database_url: str) -> None:
    """The matrix's allowed calls are real: the first allowed role's call succeeds."""
    alarm, _wo = await seed_entrapment(database_url)
    admin = await login(client, "admin")
    resp = await client.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=admin, json={})
    assert resp.status_code == 200 and resp.json()["state"] == "ack"
    resp = await client.post("/api/v1/users", headers=admin, json={
        "username": "tech2", "password": "long enough pw", "role": "technician"})
    assert resp.status_code == 201 and resp.json()["role"] == "technician"
    again = await client.post("/api/v1/users", headers=admin, json={
        "username": "tech2", "password": "long enough pw", "role": "technician"})
    assert again.status_code == 409
    assert again.json() == {"detail": "user tech2 already exists"}
    resp = await client.patch("/api/v1/users/tech2", headers=admin, json={"active": False})
    assert resp.status_code == 200 and resp.json()["active"] is False
    resp = await client.patch("/api/v1/users/admin", headers=admin, json={"role": "operator"})
    assert resp.status_code == 409  # an admin cannot demote themself
    assert run_sql(database_url, "SELECT count(*) FROM users WHERE role = 'admin'") == [(1,)]


async def test_stream_needs_a_token(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/stream")
    assert resp.status_code == 401
    resp = await client.get("/api/v1/stream", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
