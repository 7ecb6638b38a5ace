"""API against a real PostgreSQL: health, the token flow and its refusals, devices with their
latest values typed by point type, the duty-room page, malformed input answered 4xx."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.app import create_app
from tests.integration.api_support import PASSWORD, api_client, login, run_sql, seed_site


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


def set_value(url: str, device: str, point: str, value: float | None, text: str | None = None,
              quality: int = 0, flags: str | None = None) -> None:
    run_sql(
        url,
        "INSERT INTO latest_values (point_id, time, value, value_text, quality, flags)"
        " SELECT p.id, '2025-01-02T03:04:05Z', %s, %s, %s, %s FROM points p"
        " JOIN devices d ON d.id = p.device_id WHERE d.name = %s AND p.name = %s",
        (value, text, quality, flags, device, point),
    )


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "database": "ok"}


async def test_health_is_503_when_the_database_is_gone(
    database_url: str, pg_server: object, tmp_path: Path
) -> None:
    async with api_client(create_app(database_url)) as client:
        name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:  # type: ignore[attr-defined]
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        resp = await client.get("/api/v1/health")
    assert resp.status_code == 503
    assert resp.json()["database"] == "unavailable"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic b3BlcmF0b3I6eA=="},
     {"Authorization": "Bearer " + "x" * 5000}],
    ids=["none", "unknown", "basic", "huge"],
)
async def test_routes_refuse_missing_or_bad_tokens(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for path in ("/api/v1/devices", "/api/v1/alarms", "/api/v1/work-orders", "/api/v1/me"):
        resp = await client.get(path, headers=headers)
        assert resp.status_code == 401, path
        assert resp.headers["www-authenticate"] == "Bearer"
        assert isinstance(resp.json()["detail"], str)


async def test_token_flow(client: httpx.AsyncClient, database_url: str) -> None:
    resp = await client.post(
        "/api/v1/auth/token", data={"username": "manager", "password": PASSWORD}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 12 * 3600
    token = body["access_token"]
    # Only the digest is stored, and it belongs to the manager.
    rows = run_sql(
        database_url,
        "SELECT t.token_sha256, u.username, t.expires_at - t.created_at FROM api_tokens t"
        " JOIN users u ON u.id = t.user_id",
    )
    assert [(bytes(r[0]), r[1]) for r in rows] == [
        (hashlib.sha256(token.encode()).digest(), "manager")
    ]
    assert rows[0][2].total_seconds() == pytest.approx(12 * 3600, abs=5)
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["username"] == "manager"
    assert me.json()["role"] == "manager"


async def test_expired_token_and_deactivated_user_are_refused(
    client: httpx.AsyncClient, database_url: str
) -> None:
    headers = await login(client, "operator")
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    run_sql(database_url, "UPDATE api_tokens SET expires_at = now() - interval '1 second'")
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    headers = await login(client, "operator")
    run_sql(database_url, "UPDATE users SET active = false WHERE username = 'operator'")
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401


@pytest.mark.parametrize(
    "form",
    [{"username": "operator", "password": "wrong"},
     {"username": "nobody", "password": PASSWORD},
     {"username": "oper\x00ator", "password": PASSWORD},
     {"username": "operator", "password": "x" * 10_000}],
    ids=["wrong-password", "unknown-user", "nul-byte", "huge-password"],
)
async def test_bad_credentials_are_401_json(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    resp = await client.post("/api/v1/auth/token", data=form)
    assert resp.status_code == 401
    assert resp.json() == {"detail": "incorrect username or password"}


async def test_login_without_form_fields_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/v1/auth/token", data={"username": "operator"})
    assert resp.status_code == 422
    resp = await client.post("/api/v1/auth/token", json={"username": "x", "password": "y"})
    assert resp.status_code == 422


async def test_devices_carry_status_and_typed_latest_values(
    client: httpx.AsyncClient, database_url: str
) -> None:
    set_value(database_url, "a-elevator-1", "door_closed", 1.0)
    set_value(database_url, "a-elevator-1", "moving", 0.0)
    set_value(database_url, "a-elevator-1", "car_floor", -2.0)
    set_value(database_url, "a-elevator-1", "speed_mps", 1.25)
    set_value(database_url, "a-elevator-1", "service_mode", None, "inspection")
    set_value(database_url, "a-elevator-1", "passengers", 3.0, quality=2)
    set_value(database_url, "a-firepanel", "zone_3_alarm", 1.0)
    set_value(database_url, "a-firepanel", "zone_1_alarm", None, quality=1,
              flags="fault,open-loop")
    run_sql(database_url, "INSERT INTO device_status (device_id, state, reason, time)"
            " SELECT id, 'offline', 'timeout', now() FROM devices WHERE name = 'a-firepanel'")
    run_sql(database_url,
            "INSERT INTO gateway_status VALUES ('tsite', 'gw-a', 'online', 's1', now())")
    headers = await login(client, "technician")

    resp = await client.get("/api/v1/devices", headers=headers)
    assert resp.status_code == 200
    devices = {d["name"]: d for d in resp.json()}
    assert list(devices) == ["a-elevator-1", "a-firepanel", "b-elevator-1"]
    elevator = devices["a-elevator-1"]
    assert (elevator["site"], elevator["building"], elevator["gateway"]) == ("tsite", "a", "gw-a")
    assert (elevator["type"], elevator["profile"], elevator["protocol"]) == (
        "elevator", "elevator", "modbus")
    assert elevator["status"] == "unknown"
    assert elevator["gateway_status"] == "online"
    values = elevator["values"]
    assert values["door_closed"]["value"] is True
    assert values["moving"]["value"] is False
    assert values["car_floor"]["value"] == -2 and isinstance(values["car_floor"]["value"], int)
    speed = dict(values["speed_mps"])
    assert speed.pop("age_s") > 300 * 86400  # stored in January 2025
    assert speed == {
        "value": 1.25, "quality": "good", "time": "2025-01-02T03:04:05Z", "unit": "m/s",
        "flags": None}
    assert elevator["open_alarms"] == []
    assert values["service_mode"]["value"] == "inspection"
    assert values["passengers"]["quality"] == "stale"
    assert "load_kg" not in values  # never reported
    panel = devices["a-firepanel"]
    assert (panel["status"], panel["status_reason"]) == ("offline", "timeout")
    assert panel["values"]["zone_3_alarm"]["value"] is True
    # what the panel said of a zone it reports bad, beside the quality
    zone_1 = panel["values"]["zone_1_alarm"]
    assert (zone_1["value"], zone_1["quality"], zone_1["flags"]) == (
        None, "bad", "fault,open-loop")
    assert devices["b-elevator-1"]["gateway_status"] == "unknown"

    only_b = await client.get("/api/v1/devices", params={"building": "b"}, headers=headers)
    assert [d["name"] for d in only_b.json()] == ["b-elevator-1"]
    one = await client.get("/api/v1/devices/a-firepanel", headers=headers)
    assert one.status_code == 200
    single = one.json()
    for body in (single, panel):
        for value in body["values"].values():
            value.pop("age_s")
    assert single == panel


async def test_unknown_and_malformed_device_names(client: httpx.AsyncClient) -> None:
    headers = await login(client, "operator")
    resp = await client.get("/api/v1/devices/z-elevator-9", headers=headers)
    assert resp.status_code == 404
    assert resp.json() == {"detail": "device z-elevator-9 not found"}
    for bad in ("A%00B", "x" * 100, "Robert');DROP"):
        resp = await client.get(f"/api/v1/devices/{bad}", headers=headers)
        assert resp.status_code == 422, bad
    resp = await client.get("/api/v1/devices", params={"site": "\x00"}, headers=headers)
    assert resp.status_code == 422


@pytest.mark.parametrize(
    ("path", "script"),
    [("/", "duty_room.js"), ("/tech", "tech.js"), ("/desk", "desk.js"),
     ("/reports", "reports.js"), ("/devices/a-elevator-1", "device.js")],
)
async def test_pages_and_their_assets(client: httpx.AsyncClient, path: str, script: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Test Estate" in html
    assert '<form id="login"' in html
    assert "Building A" in html  # building names handed to the script
    assert 'id="stream-banner"' in html
    for asset in (f"/static/{script}", "/static/common.js", "/static/app.css"):
        assert asset in html
        resp = await client.get(asset)
        assert resp.status_code == 200 and len(resp.content) > 100
    assert "sessionStorage" in (await client.get("/static/common.js")).text


async def test_device_page_serves_the_vendored_chart_library(client: httpx.AsyncClient) -> None:
    html = (await client.get("/devices/a-elevator-1")).text
    for asset in ("/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/uPlot.min.css"):
        assert asset in html
        assert (await client.get(asset)).status_code == 200
    assert "MIT" in (await client.get("/static/vendor/uplot/LICENSE")).text
    assert (await client.get("/devices/NOT%20A%20NAME")).status_code == 422


async def test_a_read_only_database_is_503_with_retry_after_never_500(
    client: httpx.AsyncClient, database_url: str, pg_server: object,
) -> None:
    """During a failover the API's connections may reach a standby (or a primary being
    demoted): a write refused as "read-only transaction" is an outage, answered 503 with
    Retry-After like a lost connection, and the same request succeeds once writes are back."""
    from tests.integration.test_rules_outage import set_database_read_only

    await login(client, "operator")  # works while the database takes writes
    set_database_read_only(pg_server, database_url, True)  # type: ignore[arg-type]
    try:
        resp = await client.post("/api/v1/auth/token",
                                 data={"username": "operator", "password": PASSWORD})
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "5"
        assert resp.json() == {"detail": "database unavailable, retry shortly"}
    finally:
        set_database_read_only(pg_server, database_url, False)  # type: ignore[arg-type]
    assert (await login(client, "operator"))["Authorization"].startswith("Bearer ")
