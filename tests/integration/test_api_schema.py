"""Schemathesis against the API's own OpenAPI schema, in process (ASGI) against a real,
seeded PostgreSQL: for every operation but the endless stream, generated requests (valid and
invalid bodies, paths and queries) as the admin (who may call every route) and without a
token never get a 5xx. Examples are bounded so the run stays well under a minute."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from api.app import create_app
from api.tokens import digest
from tests.integration.api_support import seed_entrapment, seed_site

EXAMPLES_PER_OPERATION = 12
# Endless; argon2 per call; revokes the admin's token (each tested apart).
SKIP = ("/api/v1/stream", "/api/v1/auth/token", "/api/v1/auth/sign-out")


def _admin_token(database_url: str) -> str:
    token = secrets.token_urlsafe(32)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO api_tokens (token_sha256, user_id, expires_at) SELECT %s, id, now() + %s"
            " FROM users WHERE username = 'admin'", (digest(token), timedelta(hours=1)))
    return token


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(database_url: str, tmp_path: Path) -> None:
    site = seed_site(database_url, tmp_path)
    asyncio.run(seed_entrapment(database_url))
    auth = {"Authorization": f"Bearer {_admin_token(database_url)}"}
    app = create_app(database_url, site=site)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
    operations = [op for op in operations if op.path not in SKIP]
    assert len(operations) >= 25
    failures: list[str] = []
    for operation in operations:
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=strategy, with_token=st.booleans())
        def run(case: Any, with_token: bool) -> None:
            headers = {**dict(case.headers or {}), **(auth if with_token else {})}
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r}"
                                f" -> {response.status_code} {response.text[:200]}")
            public = case.formatted_path == "/api/v1/health"
            if not with_token and not public and response.status_code not in (400, 401, 404, 422):
                failures.append(f"no token: {case.method} {case.formatted_path}"
                                f" -> {response.status_code}")

        run()
    assert failures == []
