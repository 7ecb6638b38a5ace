"""Photos and attachments on work orders (table ``work_order_attachments``, migration 0012):
what a file is, decided by its content (magic numbers), never by its name or the type the
client claims; the size limit; storage in PostgreSQL with a SHA-256 checksum, verified again
when the file is read back. No HTTP here: the routes (api.routes.attachments) check roles."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from pydantic import BaseModel

from api.rows import from_row

MAX_BYTES = 8 * 1024 * 1024
Stage = Literal["before", "after", "other"]
# (prefix at offset 0, extra check, content type): JPEG, PNG, WebP, PDF
_SIGNATURES: tuple[tuple[bytes, bytes | None, str], ...] = (
    (b"\xff\xd8\xff", None, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", None, "image/png"),
    (b"RIFF", b"WEBP", "image/webp"),
    (b"%PDF-", None, "application/pdf"),
)
ALLOWED = "JPEG, PNG or WebP photos, or PDF documents"


class RefusedFile(ValueError):
    """The file is refused: ``reason`` says why in a sentence, ``status`` the HTTP code."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def sniff(data: bytes) -> str | None:
    """The content type the bytes are, or None for anything not allowed."""
    for prefix, webp, content_type in _SIGNATURES:
        if data.startswith(prefix) and (webp is None or data[8:12] == webp):
            return content_type
    return None


def check(data: bytes, filename: str) -> str:
    """The content type of an acceptable file; RefusedFile otherwise."""
    if not data:
        raise RefusedFile(f"{filename} is empty", 422)
    if len(data) > MAX_BYTES:
        raise RefusedFile(f"{filename} is {len(data) / 1048576:.1f} MB; the limit is "
                          f"{MAX_BYTES // 1048576} MB", 413)
    content_type = sniff(data)
    if content_type is None:
        raise RefusedFile(f"{filename} is not a {ALLOWED} (checked by its content)", 415)
    return content_type


class AttachmentOut(BaseModel):
    id: int
    work_order_id: int
    step_seq: int | None
    stage: Stage
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredFile:
    content_type: str
    filename: str
    content: bytes
    sha256: str


_COLS = ("id, work_order_id, step_seq, stage, filename, content_type, size_bytes, sha256,"
         " uploaded_by, uploaded_at")


async def store(conn: psycopg.AsyncConnection[Any], *, order_id: int, step: int | None,
                stage: Stage, filename: str, content_type: str, data: bytes,
                actor: str) -> AttachmentOut:
    cur = await conn.execute(
        "INSERT INTO work_order_attachments (work_order_id, step_seq, stage, filename,"
        " content_type, size_bytes, sha256, content, uploaded_by) VALUES"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING " + _COLS,
        (order_id, step, stage, filename, content_type, len(data),
         hashlib.sha256(data).hexdigest(), data, actor))
    row = await cur.fetchone()
    assert row is not None
    return from_row(AttachmentOut, row)


async def of_order(conn: psycopg.AsyncConnection[Any], order_id: int) -> list[AttachmentOut]:
    cur = await conn.execute("SELECT " + _COLS + " FROM work_order_attachments"
                             " WHERE work_order_id = %s ORDER BY id", (order_id,))
    return [from_row(AttachmentOut, r) for r in await cur.fetchall()]


class ChecksumMismatch(RuntimeError):
    def __init__(self, attachment_id: int) -> None:
        super().__init__(f"attachment {attachment_id} does not match its checksum")
        self.attachment_id = attachment_id


async def read(conn: psycopg.AsyncConnection[Any], attachment_id: int) -> StoredFile | None:
    cur = await conn.execute("SELECT content_type, filename, content, sha256"
                             " FROM work_order_attachments WHERE id = %s", (attachment_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    content = bytes(row[2])
    if hashlib.sha256(content).hexdigest() != row[3]:
        raise ChecksumMismatch(attachment_id)
    return StoredFile(row[0], row[1], content, row[3])
