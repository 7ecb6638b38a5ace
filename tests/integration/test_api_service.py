"""The API as a real server (uvicorn on an ephemeral loopback port) and its start-up checks,
plus the user accounts module against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from api.app import create_app
from api.service import ApiStartFailed, serve_api
from facility.db.migrate import SchemaBehind
from facility.ports import free_port
from facility.users import (
    DEMO_STAFF,
    UserExists,
    authenticate,
    create_user,
    ensure_demo_users,
)
from stack.embedded.postgres import PostgresServer
from tests.integration.api_support import PASSWORD, api_client


@pytest.fixture
def empty_database_url(pg_server: PostgresServer) -> Iterator[str]:
    name = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_serve_api_listens_then_stops_when_cancelled(database_url: str) -> None:
    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(serve_api(database_url, "127.0.0.1", port, ready=ready))
    async with asyncio.timeout(10):
        await ready.wait()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        resp = await client.get("/api/v1/health")
        assert resp.json() == {"status": "ok", "database": "ok"}
        assert (await client.get("/api/v1/devices")).status_code == 401
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await client.get("/api/v1/health")


async def test_start_refused_on_an_unmigrated_database(empty_database_url: str) -> None:
    app = create_app(empty_database_url)
    with pytest.raises(SchemaBehind) as info:
        async with api_client(app):
            pass
    assert "0003_users" in info.value.missing
    ready = asyncio.Event()
    with pytest.raises(ApiStartFailed):
        async with asyncio.timeout(10):
            await serve_api(empty_database_url, "127.0.0.1", free_port(), ready=ready)
    assert not ready.is_set()


async def test_demo_users_are_created_then_their_password_reset(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        ensure_demo_users(conn, "first")
        ensure_demo_users(conn, PASSWORD)
        roles = conn.execute("SELECT username, role FROM users ORDER BY id").fetchall()
        hashes = [r[0] for r in conn.execute("SELECT password_hash FROM users").fetchall()]
    # The four role users first, then the demo's on-call staff (facility.users.DEMO_STAFF).
    assert roles[:4] == [("operator", "operator"), ("technician", "technician"),
                         ("manager", "manager"), ("admin", "admin")]
    assert roles[4:] == [(u, str(r)) for u, r, _, _ in DEMO_STAFF]
    assert all(h.startswith("$argon2") and PASSWORD not in h for h in hashes)
    async with await psycopg.AsyncConnection.connect(database_url) as aconn:
        user = await authenticate(aconn, "technician", PASSWORD)
        assert user is not None and user.role == "technician"
        assert await authenticate(aconn, "technician", "first") is None
        assert await authenticate(aconn, "nobody", PASSWORD) is None


async def test_create_user_refuses_duplicates_and_bad_roles(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        uid = create_user(conn, "li.wei", "pw-1", "technician", trade="elevator",
                          display_name="李伟")
        with pytest.raises(UserExists):
            create_user(conn, "li.wei", "pw-2", "operator")
        with pytest.raises(ValueError):
            create_user(conn, "zhang", "pw", "janitor")
        assert conn.execute("SELECT id, trade FROM users").fetchall() == [(uid, "elevator")]
    async with await psycopg.AsyncConnection.connect(database_url) as aconn:
        user = await authenticate(aconn, "li.wei", "pw-1")
    assert user is not None and (user.trade, user.display_name) == ("elevator", "李伟")
