"""Photos on work orders against a real PostgreSQL (issue 16 item 3): the technician on the
order uploads a before photo to a step and an after photo to the order; the type is decided
by the content (a text file named .jpg is refused, with a clear message), the size is
limited; the file comes back byte for byte with its checksum to anyone signed in and to
nobody without a token; a damaged file is refused, not served; uploads are audited."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.attachments import MAX_BYTES, sniff
from tests.integration.api_support import api_client, login, run_sql, seed_entrapment, seed_site

API = "/api/v1"
PNG = base64.b64decode(  # a 1x1 red pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5E"
    "rkJggg==")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


def test_types_are_decided_by_content() -> None:
    assert sniff(PNG) == "image/png" and sniff(JPEG) == "image/jpeg"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff(b"%PDF-1.7\n") == "application/pdf"
    assert sniff(b"<svg xmlns=...>") is None and sniff(b"<html>") is None


async def test_photos_on_an_order_stored_with_checksum_and_served_only_with_a_token(
    client: httpx.AsyncClient, database_url: str,
) -> None:
    _alarm, wo = await seed_entrapment(database_url)
    run_sql(database_url, "UPDATE work_orders SET state = 'on_site', assignee = 'technician'"
            " WHERE id = %s", (wo,))
    tech, operator, manager = [await login(client, r)
                               for r in ("technician", "operator", "manager")]
    url = f"{API}/work-orders/{wo}/attachments"
    resp = await client.post(url, headers=tech, data={"stage": "before", "step": "1"},
                             files={"file": ("before.png", PNG, "image/png")})
    assert resp.status_code == 201, resp.text
    before = resp.json()
    assert (before["content_type"], before["size_bytes"], before["step_seq"]) == (
        "image/png", len(PNG), 1)
    assert before["sha256"] == hashlib.sha256(PNG).hexdigest()
    resp = await client.post(url, headers=tech, data={"stage": "after"},
                             files={"file": ("after.jpg", JPEG, "application/octet-stream")})
    assert resp.status_code == 201 and resp.json()["content_type"] == "image/jpeg"

    fake = await client.post(url, headers=tech, files={"file": ("photo.jpg", b"hello world",
                                                                "image/jpeg")})
    assert fake.status_code == 415
    assert fake.json()["detail"] == ("photo.jpg is not a JPEG, PNG or WebP photos, or PDF"
                                     " documents (checked by its content)")
    big = await client.post(url, headers=tech, files={
        "file": ("huge.jpg", JPEG + bytes(MAX_BYTES), "image/jpeg")})
    assert big.status_code == 413 and "the limit is 8 MB" in big.json()["detail"]
    assert (await client.post(url, headers=tech, data={"step": "99"}, files={
        "file": ("x.png", PNG, "image/png")})).status_code == 400
    assert (await client.post(url, headers=manager, files={
        "file": ("x.png", PNG, "image/png")})).status_code == 403

    listed = (await client.get(url, headers=operator)).json()
    assert [(a["filename"], a["stage"]) for a in listed] == [("before.png", "before"),
                                                            ("after.jpg", "after")]
    assert (await client.get(f"{API}/attachments/{before['id']}")).status_code == 401
    got = await client.get(f"{API}/attachments/{before['id']}", headers=manager)
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-checksum-sha256"] == before["sha256"]
    assert got.headers["content-disposition"].startswith("attachment;")

    run_sql(database_url, "UPDATE work_order_attachments SET content = %s WHERE id = %s",
            (PNG[:-1] + b"\x00", before["id"]))
    damaged = await client.get(f"{API}/attachments/{before['id']}", headers=manager)
    assert damaged.status_code == 500 and "checksum" in damaged.json()["detail"]

    admin = await login(client, "admin")
    log = (await client.get(f"{API}/audit?action=work_order", headers=admin)).json()
    assert [e["detail"]["filename"] for e in log if e["action"] == "work_order.attachment"] \
        == ["after.jpg", "before.png"]
