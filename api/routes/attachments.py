"""Photos and attachments on work orders through the API. Upload (multipart ``file``, with
``stage`` before / after / other and optionally the checklist ``step``): the technician on the
order, the duty room or an admin, as for ticking steps. List and download: everyone signed in
(as reading orders); a file is only ever served with a valid bearer token (the pages fetch it
with theirs), as ``attachment`` with nosniff, never rendered as a page of ours. Limits: 8 MB,
JPEG / PNG / WebP / PDF by content. Uploads are in the audit log (work_order.attachment)."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, Path, UploadFile, status
from fastapi.responses import Response

from api import attachments, audit
from api.attachments import AttachmentOut, Stage
from api.deps import ClientAddress, Conn, CurrentUser, Fieldworker
from api.errors import ApiError, NotFound
from api.scoping import check_work_order
from api.work_order_policy import step_refusal

log = logging.getLogger(__name__)
router = APIRouter(tags=["work-orders"])
OrderId = Annotated[int, Path(ge=1, le=2**62)]


@router.post("/work-orders/{work_order_id}/attachments", response_model=AttachmentOut,
             status_code=201, responses={413: {}, 415: {}})
async def upload(
    conn: Conn, user: Fieldworker, work_order_id: OrderId, address: ClientAddress,
    file: Annotated[UploadFile, File(description="the photo or document")],
    stage: Annotated[Stage, Form()] = "other",
    step: Annotated[int | None, Form(ge=1, le=1000)] = None,
) -> AttachmentOut:
    """A photo from the phone (before / after the repair), on the order or one of its steps."""
    await check_work_order(conn, user, work_order_id)
    cur = await conn.execute("SELECT assignee FROM work_orders WHERE id = %s", (work_order_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("work order", work_order_id)
    reason = step_refusal(user.role, user.username, row[0])
    if reason is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, reason)
    data = await file.read(attachments.MAX_BYTES + 1)
    name = (file.filename or "upload")[-200:]
    try:
        content_type = attachments.check(data, name)
    except attachments.RefusedFile as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    if step is not None:
        cur = await conn.execute("SELECT 1 FROM work_order_steps WHERE work_order_id = %s"
                                 " AND seq = %s", (work_order_id, step))
        if await cur.fetchone() is None:
            raise ApiError(f"work order {work_order_id} has no step {step}")
    async with conn.transaction():
        stored = await attachments.store(conn, order_id=work_order_id, step=step, stage=stage,
                                         filename=name, content_type=content_type, data=data,
                                         actor=user.username)
        await audit.record(conn, actor=user.username, action="work_order.attachment",
                           target=str(work_order_id), address=address,
                           detail={"id": stored.id, "filename": name, "stage": stage,
                                   "step": step, "bytes": len(data),
                                   "sha256": stored.sha256})
    return stored


@router.get("/work-orders/{work_order_id}/attachments", response_model=list[AttachmentOut])
async def list_attachments(conn: Conn, user: CurrentUser,
                           work_order_id: OrderId) -> list[AttachmentOut]:
    await check_work_order(conn, user, work_order_id)
    return await attachments.of_order(conn, work_order_id)


@router.get("/attachments/{attachment_id}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {},
                                         "application/pdf": {}}}})
async def download(conn: Conn, user: CurrentUser,
                   attachment_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    """The file's bytes (checked against their checksum first)."""
    cur = await conn.execute("SELECT work_order_id FROM work_order_attachments WHERE id = %s",
                             (attachment_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("attachment", attachment_id)
    try:
        await check_work_order(conn, user, int(row[0]))
    except NotFound:
        raise NotFound("attachment", attachment_id) from None
    try:
        stored = await attachments.read(conn, attachment_id)
    except attachments.ChecksumMismatch:
        log.error("attachment %d is damaged: its bytes no longer match its SHA-256",
                  attachment_id)
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR,
                            f"attachment {attachment_id} is damaged (checksum)") from None
    if stored is None:
        raise NotFound("attachment", attachment_id)
    return Response(stored.content, media_type=stored.content_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(stored.filename)}",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
        "X-Checksum-Sha256": stored.sha256})
