"""Notices to residents through the API, for the duty room (operator, manager, admin): list,
write one by hand, edit the text and the expected restoration, publish, close. Drafts come
from outage alarms (api.notices). Every change is in the audit log: notice.create,
notice.update (the fields), notice.publish, notice.close. The public page that shows the
published ones is api.routes.pages' /public/{site}/notices (no sign-in, read-only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api import audit, notices
from api.deps import ClientAddress, Conn, Supervisor
from api.errors import Conflict, NotFound
from api.notices import NoticeIn, NoticeOut, NoticePatch, NoticeState
from facility.users import User

router = APIRouter(tags=["notices"])
NoticeId = Annotated[int, Path(ge=1, le=2**62)]


async def _found(conn: Conn, user: User, notice_id: int) -> NoticeOut:
    """The notice, if in the user's scope (its building's, or site-wide on a site of it)."""
    found = await notices.get_notice(conn, notice_id)
    if found is None or not _visible(user, found.site, found.building):
        raise NotFound("notice", notice_id)
    return found


def _visible(user: User, site: str, building: str) -> bool:
    return user.scope.sees(site, building) if building else user.scope.sees_site(site)


@router.get("/notices", response_model=list[NoticeOut])
async def list_notices(
    conn: Conn, user: Supervisor,
    site: Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,64}$")] = None,
    state: NoticeState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NoticeOut]:
    """Drafts and published notices first, newest first."""
    return await notices.list_notices(conn, user.scope, site, state, limit)


@router.post("/notices", response_model=NoticeOut, status_code=201)
async def create_notice(conn: Conn, user: Supervisor, body: NoticeIn,
                        address: ClientAddress) -> NoticeOut:
    if not _visible(user, body.site, body.building):
        raise NotFound("site", body.site)
    async with conn.transaction():
        notice_id = await notices.create(conn, body, user.username)
        await audit.record(conn, actor=user.username, action="notice.create",
                           target=str(notice_id), address=address,
                           detail={"site": body.site, "kind": body.kind})
    return await _found(conn, user, notice_id)


@router.get("/notices/{notice_id}", response_model=NoticeOut)
async def get_notice(conn: Conn, user: Supervisor, notice_id: NoticeId) -> NoticeOut:
    return await _found(conn, user, notice_id)


@router.patch("/notices/{notice_id}", response_model=NoticeOut, responses={409: {}})
async def edit_notice(conn: Conn, user: Supervisor, notice_id: NoticeId, body: NoticePatch,
                      address: ClientAddress) -> NoticeOut:
    """Edit a draft or a published notice (the public page shows the change at once)."""
    async with conn.transaction():
        if (await _found(conn, user, notice_id)).state == "closed":
            raise Conflict(f"notice {notice_id} is closed")
        fields = await notices.update(conn, notice_id, body, user.username)
        await audit.record(conn, actor=user.username, action="notice.update",
                           target=str(notice_id), address=address, detail={"fields": fields})
    return await _found(conn, user, notice_id)


@router.post("/notices/{notice_id}/publish", response_model=NoticeOut, responses={409: {}})
async def publish_notice(conn: Conn, user: Supervisor, notice_id: NoticeId,
                         address: ClientAddress) -> NoticeOut:
    async with conn.transaction():
        if (await _found(conn, user, notice_id)).state == "closed":
            raise Conflict(f"notice {notice_id} is closed")
        await notices.set_state(conn, notice_id, "published", user.username)
        await audit.record(conn, actor=user.username, action="notice.publish",
                           target=str(notice_id), address=address)
    return await _found(conn, user, notice_id)


@router.post("/notices/{notice_id}/close", response_model=NoticeOut)
async def close_notice(conn: Conn, user: Supervisor, notice_id: NoticeId,
                       address: ClientAddress) -> NoticeOut:
    async with conn.transaction():
        if (await _found(conn, user, notice_id)).state != "closed":
            await notices.set_state(conn, notice_id, "closed", user.username)
            await audit.record(conn, actor=user.username, action="notice.close",
                               target=str(notice_id), address=address)
    return await _found(conn, user, notice_id)
