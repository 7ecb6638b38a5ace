"""API hardening against a real PostgreSQL: sign-in throttling per user name and per client
address (delays, locks, parallel guesses, shared by two app instances, the password never
checked while refused, admins see and clear locks), sign-out revoking the token, the audit
log of sign-ins and user administration, security headers on every kind of response, and
staff phone numbers only for the roles that dispatch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import api.routes.auth
from api.app import create_app
from api.settings import ApiSettings
from facility.site import Site
from tests.integration.api_support import PASSWORD, api_client, login, run_sql, seed_site

# Small numbers so that a test reaches a lock in a few attempts; delays long enough that no
# attempt of a test outlives one however slow the machine (end_delay ends one at once).
SETTINGS = ApiSettings(sign_in_free_failures_user=2, sign_in_free_failures_address=5,
                       sign_in_first_delay_s=300, sign_in_max_delay_s=3600,
                       sign_in_lock_after_user=4, sign_in_lock_after_address=8,
                       sign_in_lock_s=600)
Attempt = Callable[[str, str], Awaitable[httpx.Response]]


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Site:
    return seed_site(database_url, tmp_path)


@pytest.fixture
async def client(database_url: str, site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(database_url, site=site, settings=SETTINGS)) as c:
        yield c


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The user names whose password the sign-in route checked (the argon2 seam)."""
    seen: list[str] = []
    real = api.routes.auth.check_password

    async def counting(login: Any, password: str) -> Any:
        seen.append(login.user.username if login is not None else "")
        return await real(login, password)

    monkeypatch.setattr(api.routes.auth, "check_password", counting)
    return seen


def attempt_on(client: httpx.AsyncClient) -> Attempt:
    async def attempt(username: str, password: str) -> httpx.Response:
        return await client.post("/api/v1/auth/token",
                                 data={"username": username, "password": password})
    return attempt


def end_delay(database_url: str) -> None:
    """Let the current delay pass without waiting for it."""
    run_sql(database_url, "UPDATE sign_in_throttle SET delayed_until = now() - interval '1 s'"
            " WHERE delayed_until IS NOT NULL")


def audit_rows(database_url: str, action: str) -> list[tuple[Any, ...]]:
    return run_sql(database_url, "SELECT actor, target, outcome, reason FROM audit_log"
                   " WHERE action = %s ORDER BY id", (action,))


async def test_failures_delay_then_lock_a_user_and_a_lock_skips_the_password_check(
    client: httpx.AsyncClient, database_url: str, verifications: list[str]
) -> None:
    attempt = attempt_on(client)
    assert (await attempt("operator", "wrong-1")).status_code == 401
    assert (await attempt("operator", "wrong-2")).status_code == 401   # 2 failures: delay
    delayed = await attempt("operator", PASSWORD)
    assert delayed.status_code == 429, delayed.text
    assert 290 <= int(delayed.headers["Retry-After"]) <= 300              # the first: 300 s
    assert "delayed" in delayed.json()["detail"]
    assert verifications == ["operator"] * 2           # the delayed attempt was not checked
    end_delay(database_url)
    assert (await attempt("operator", "wrong-3")).status_code == 401   # delay doubled
    second = await attempt("operator", "wrong-4")
    assert second.status_code == 429 and 590 <= int(second.headers["Retry-After"]) <= 600
    end_delay(database_url)
    assert (await attempt("operator", "wrong-4")).status_code == 401   # 4 failures: locked
    assert len(verifications) == 4

    locked = await attempt("operator", PASSWORD)       # the right password, but locked
    assert locked.status_code == 429 and "locked" in locked.json()["detail"]
    assert 590 <= int(locked.headers["Retry-After"]) <= 600
    assert len(verifications) == 4                     # no argon2 for a locked account
    assert (await attempt("technician", PASSWORD)).status_code == 200  # others are not locked

    reasons = [r[3] for r in audit_rows(database_url, "sign_in") if r[1] == "operator"]
    # (a refusal repeated within a minute is not written again)
    assert reasons == ["bad_credentials", "bad_credentials", "delayed", "bad_credentials",
                       "bad_credentials", "locked"]
    assert ("technician", "technician", "success", None) in audit_rows(database_url, "sign_in")

    admin = await login(client, "admin")
    locks = (await client.get("/api/v1/auth/locks", headers=admin)).json()
    by_key = {(x["kind"], x["key"]): x for x in locks}
    assert by_key[("user", "operator")]["failures"] == 4
    assert by_key[("user", "operator")]["locked_until"] is not None
    assert by_key[("address", "127.0.0.1")]["locked_until"] is None
    cleared = await client.delete("/api/v1/auth/locks", headers=admin,
                                  params={"kind": "user", "key": "operator"})
    assert cleared.status_code == 204
    assert (await client.delete("/api/v1/auth/locks", headers=admin,
                                params={"kind": "user", "key": "operator"})).status_code == 404
    assert (await attempt("operator", PASSWORD)).status_code == 200
    assert audit_rows(database_url, "sign_in_lock.clear") == [
        ("admin", "operator", "success", None)]


async def test_parallel_guesses_cannot_slip_past_the_delay(
    client: httpx.AsyncClient, verifications: list[str]
) -> None:
    """Each attempt is charged before its password is checked: of 12 guesses sent at once,
    only the 2 free ones are checked."""
    attempt = attempt_on(client)
    replies = await asyncio.gather(*(attempt("manager", f"guess-{i}") for i in range(12)))
    codes = sorted(r.status_code for r in replies)
    assert codes == [401] * 2 + [429] * 10
    assert verifications == ["manager"] * 2


async def test_an_address_is_locked_across_user_names_and_app_instances(
    client: httpx.AsyncClient, database_url: str, site: Site, verifications: list[str]
) -> None:
    attempt = attempt_on(client)
    admin = await login(client, "admin")
    for i in range(8):      # a different made-up name each time: only the address adds up
        end_delay(database_url)
        assert (await attempt(f"nobody-{i}", "x")).status_code == 401
    # A second app (another worker process, or after a restart) sees the same lock.
    async with api_client(create_app(database_url, site=site, settings=SETTINGS)) as other:
        refused = await attempt_on(other)("operator", PASSWORD)
    assert refused.status_code == 429 and "locked" in refused.json()["detail"]
    assert "operator" not in verifications
    locks = (await client.get("/api/v1/auth/locks", headers=admin)).json()
    assert locks[0]["kind"] == "address" and locks[0]["key"] == "127.0.0.1"
    assert locks[0]["failures"] == 8 and locks[0]["locked_until"] is not None
    assert run_sql(database_url, "SELECT count(*) FROM audit_log WHERE reason = 'locked'"
                   " AND target = 'operator' AND detail->>'by' = 'address'") == [(1,)]


async def test_a_success_forgets_the_user_names_failures(
    client: httpx.AsyncClient, database_url: str
) -> None:
    attempt = attempt_on(client)
    assert (await attempt("operator", "wrong")).status_code == 401
    assert (await attempt("operator", PASSWORD)).status_code == 200
    assert run_sql(database_url, "SELECT kind, failures FROM sign_in_throttle ORDER BY kind") == [
        ("address", 1)]


async def test_sign_out_revokes_the_token_on_the_server(
    client: httpx.AsyncClient, database_url: str
) -> None:
    headers = await login(client, "operator")
    other = await login(client, "operator")          # a second session of the same user
    assert (await client.post("/api/v1/auth/sign-out", headers=headers)).status_code == 204
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    assert (await client.post("/api/v1/auth/sign-out", headers=headers)).status_code == 401
    assert (await client.get("/api/v1/me", headers=other)).status_code == 200
    assert audit_rows(database_url, "sign_out") == [("operator", "operator", "success", None)]


async def login_as(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    resp = await client.post("/api/v1/auth/token",
                             data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def test_user_administration_is_audited_and_readable_by_admins(
    client: httpx.AsyncClient
) -> None:
    admin = await login(client, "admin")
    body = {"username": "tech9", "password": "long enough pw", "role": "technician"}
    assert (await client.post("/api/v1/users", headers=admin, json=body)).status_code == 201
    tech9 = await login_as(client, "tech9", "long enough pw")
    for change in ({"role": "operator"}, {"scope": ["tsite/b", "tsite/a", "tsite/a"]},
                   {"scope": ["tsite/b", "tsite/a"]}, {"password": "another long pw"},
                   {"display_name": "Zhao", "trade": "fire"}, {"active": False}):
        resp = await client.patch("/api/v1/users/tech9", headers=admin, json=change)
        assert resp.status_code == 200, resp.text
    log = (await client.get("/api/v1/audit", headers=admin,
                            params={"action": "user", "target": "tech9"})).json()
    assert [(e["action"], e["actor"], e["detail"]) for e in reversed(log)] == [
        ("user.create", "admin", {"role": "technician", "trade": None, "scope": None}),
        ("user.role", "admin", {"from": "technician", "to": "operator"}),
        ("user.scope", "admin", {"from": None, "to": ["tsite/a", "tsite/b"]}),
        ("user.password", "admin", {}),
        ("user.update", "admin", {"fields": ["display_name", "trade"]}),
        ("user.deactivate", "admin", {}),
    ]
    assert all(e["address"] == "127.0.0.1" and e["outcome"] == "success" for e in log)
    # the same scope again changed nothing; a new scope ended tech9's sessions at once
    assert (await client.get("/api/v1/me", headers=tech9)).status_code == 401
    sign_ins = (await client.get("/api/v1/audit", headers=admin,
                                 params={"action": "sign_in", "limit": 2})).json()
    assert [(e["actor"], e["outcome"]) for e in sign_ins] == [("tech9", "success"),
                                                               ("admin", "success")]
    operator = await login(client, "operator")
    assert (await client.get("/api/v1/audit", headers=operator)).status_code == 403


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    headers = await login(client, "operator")
    answers = {
        "page": await client.get("/"),
        "device page": await client.get("/devices/a-elevator-1"),
        "static": await client.get("/static/common.js"),
        "api": await client.get("/api/v1/me", headers=headers),
        "401": await client.get("/api/v1/me"),
        "404": await client.get("/no/such/page"),
        "422": await client.get("/api/v1/alarms?limit=nope", headers=headers),
        "health": await client.get("/api/v1/health"),
        "openapi": await client.get("/openapi.json"),
        "docs": await client.get("/docs"),
    }
    for name, resp in answers.items():
        h = resp.headers
        csp = h.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "'unsafe-eval'" not in csp, name
        assert "script-src 'self'" in csp and "'unsafe-inline' " not in csp.split(
            "style-src")[0], name
        assert h.get("x-content-type-options") == "nosniff", name
        assert h.get("x-frame-options") == "DENY", name
        assert h.get("referrer-policy") == "no-referrer", name
    assert "style-src 'self';" in answers["page"].headers["content-security-policy"]
    assert answers["api"].headers["cache-control"] == "no-store"
    assert answers["docs"].status_code == 200 and "<script>" not in answers["docs"].text
    assert "cdn" not in answers["docs"].text  # Swagger UI from this server
    assert "/static/swagger/swagger-ui-bundle.js" in answers["docs"].text
    assert "cdn" not in answers["docs"].headers["content-security-policy"]
    for name in ("page", "device page"):
        html = answers[name].text
        assert "<script>" not in html and " style=" not in html and " onclick=" not in html


async def test_staff_phone_numbers_only_for_the_roles_that_dispatch(
    client: httpx.AsyncClient, database_url: str
) -> None:
    run_sql(database_url, "INSERT INTO dispatch_staff (site_id, username, display_name, mobile)"
            " VALUES ('tsite', 'technician', 'Wang', '13800000001')")
    run_sql(database_url, "INSERT INTO dispatch_rosters (site_id, roster, timezone, body)"
            " VALUES ('tsite', 'elevator', 'Asia/Shanghai', '{}')")
    run_sql(database_url, "INSERT INTO dispatch_on_call (site_id, roster, rank, username,"
            " shift, computed_at) VALUES ('tsite', 'elevator', 0, 'technician', 'day', now())")
    seen = {}
    for role in ("operator", "technician", "manager", "admin"):
        resp = await client.get("/api/v1/roster", headers=await login(client, role))
        assert resp.status_code == 200, resp.text
        on_call = resp.json()[0]["on_call"][0]
        assert on_call["display_name"] == "Wang"
        seen[role] = on_call["mobile"]
    assert seen == {"operator": "13800000001", "technician": None, "manager": "13800000001",
                    "admin": "13800000001"}
