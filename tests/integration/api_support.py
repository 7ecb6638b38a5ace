"""Shared set-up for the API integration tests: a small site synced into the test database,
the demo users, an httpx client bound to the app with its lifespan running, and logging in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI

from facility.db.registry import sync_site
from facility.site import Site, load_site
from facility.users import ensure_demo_users

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"

SITE_YAML = """
site: tsite
name: Test Estate
gateways: [{id: gw-a}, {id: gw-b}]
buildings:
  - id: a
    name: Building A
    gateway: gw-a
    devices:
      - {id: a-elevator-1, type: elevator, profile: elevator,
         address: {protocol: modbus, port: 15021}}
      - {id: a-firepanel, type: fire_panel, profile: firepanel,
         address: {protocol: bacnet, port: 47811, device_instance: 1001}}
  - id: b
    gateway: gw-b
    devices:
      - {id: b-elevator-1, type: elevator, profile: elevator,
         address: {protocol: modbus, port: 15031}}
"""


def seed_site(database_url: str, tmp_path: Path) -> Site:
    """Write and load the test site, register its devices and points, create the demo users."""
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML, encoding="utf-8")
    site = load_site(path, profiles_dir=ROOT / "profiles")
    with psycopg.connect(database_url) as conn:
        sync_site(conn, site)
        ensure_demo_users(conn, PASSWORD)
    return site


def run_sql(
    database_url: str, query: str, params: Sequence[Any] | dict[str, Any] = ()
) -> list[Any]:
    """Execute one statement and commit; the rows it returns, if any."""
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@asynccontextmanager
async def api_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Authorization headers for a demo user."""
    resp = await client.post(
        "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def seed_entrapment(database_url: str, device: str = "a-elevator-1") -> tuple[int, int]:
    """An active unacknowledged entrapment on ``device`` and its open work order, made by the
    rules service's own functions (with the procedures loaded); (alarm id, work order id)."""
    from datetime import UTC, datetime

    from facility import events
    from facility.procedures import load_procedures, upsert_procedures
    from rules.alarms import raise_alarm
    from rules.engine_types import RaiseAlarm
    from rules.work_orders import open_for_alarm

    procedures = load_procedures(ROOT / "procedures")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await upsert_procedures(conn, procedures)
        cur = await conn.execute("SELECT id, site_id FROM devices WHERE name = %s", (device,))
        row = await cur.fetchone()
        assert row is not None, device
        act = RaiseAlarm(
            source=device, device=device, gateway=None, rule_id="entrapment",
            alarm_type="entrapment", priority="critical", procedure="elevator_entrapment",
            message="电梯困人 Passengers trapped", detail={}, at=datetime.now(UTC))
        async with conn.transaction():  # as the rules service does: events recorded last
            alarm, raised = await raise_alarm(conn, row[1], row[0], act)
            created = await open_for_alarm(
                conn, site_id=row[1], device_id=row[0], source=device, fault="entrapment",
                alarm_id=alarm.id, procedure=procedures["elevator_entrapment"],
                description=act.message, now=act.at)
            await events.record(conn, row[1], [*raised, *created])
    wo_id = created[0].work_order_id
    assert wo_id is not None
    return alarm.id, wo_id
