"""Idempotency keys (issue 23): the technician's offline queue sends each write with an
``Idempotency-Key``; against a real PostgreSQL, a repeat of a key is answered with the first
answer (marked ``Idempotent-Replayed``) and not done again: a photo sent twice is stored once,
a step ticked twice keeps its first note and time, a refused move repeats its refusal. A key is
per user, and one reused for another request is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from tests.integration.api_support import api_client, login, run_sql, seed_entrapment, seed_site

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005050200")


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def test_a_repeated_key_gets_the_first_answer_and_is_done_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    _alarm, wo = await seed_entrapment(database_url)
    run_sql(database_url, "UPDATE work_orders SET state = 'on_site', assignee = 'technician'"
            " WHERE id = %s", (wo,))
    tech = await login(client, "technician")
    photo = {"file": ("before.png", PNG, "image/png")}
    answers = [await client.post(f"/api/v1/work-orders/{wo}/attachments", files=photo,
                                 data={"stage": "before"},
                                 headers={**tech, "Idempotency-Key": "photo-1"})
               for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == answers[1].json()
    assert "idempotent-replayed" not in answers[0].headers
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert run_sql(database_url, "SELECT count(*) FROM work_order_attachments") == [(1,)]

    first = await client.post(f"/api/v1/work-orders/{wo}/steps/1", json={"note": "first"},
                              headers={**tech, "Idempotency-Key": "step-1"})
    again = await client.post(f"/api/v1/work-orders/{wo}/steps/1", json={"note": "second"},
                              headers={**tech, "Idempotency-Key": "step-1"})
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert run_sql(database_url, "SELECT note FROM work_order_steps WHERE work_order_id = %s"
                   " AND seq = 1", (wo,)) == [("first",)]

    refused = [await client.post(f"/api/v1/work-orders/{wo}/transition", json={"to": "closed"},
                                 headers={**tech, "Idempotency-Key": "close-1"})
               for _ in range(2)]
    assert [r.status_code for r in refused] == [403, 403]
    assert refused[0].json() == refused[1].json()

    reused = await client.post(f"/api/v1/work-orders/{wo}/steps/2", json={},
                               headers={**tech, "Idempotency-Key": "step-1"})
    assert reused.status_code == 422
    # another user's key space: the same key is a new request for them
    operator = await login(client, "operator")
    other = await client.post(f"/api/v1/work-orders/{wo}/steps/2", json={"note": "op"},
                              headers={**operator, "Idempotency-Key": "step-1"})
    assert other.status_code == 200 and "idempotent-replayed" not in other.headers
    assert run_sql(database_url, "SELECT count(*) FROM idempotent_requests") == [(4,)]
