"""The shift handover log through the API (api.handovers), for the duty room (operator, manager,
admin): GET /handovers/draft (what a handover written now would carry: the open alarms and
orders of the site or of the user's whole scope), POST /handovers (write it: the open items
are taken by the server at that moment, with the notes), POST /handovers/{id}/acknowledge (the
next shift; not by the one who wrote it, and once), GET /handovers (search: text, site, time,
only unacknowledged) and GET /handovers/{id}. Both writing and acknowledging are also in the
audit log (handover.write, handover.acknowledge)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api import audit, handovers
from api.deps import ClientAddress, Conn, Supervisor
from api.errors import Conflict, NotFound
from api.handovers import AckIn, HandoverIn, HandoverOut, OpenItems
from api.routes.devices import ID_PATTERN
from api.scoping import check_site

router = APIRouter(tags=["handovers"])
HandoverId = Annotated[int, Path(ge=1, le=2**62)]
SiteQuery = Annotated[str | None, Query(pattern=ID_PATTERN)]


@router.get("/handovers/draft", response_model=OpenItems)
async def draft(conn: Conn, user: Supervisor, site: SiteQuery = None) -> OpenItems:
    """The open alarms and orders a handover written now would carry."""
    if site is not None:
        check_site(user, site)
    return await handovers.open_items(conn, user, site)


@router.post("/handovers", response_model=HandoverOut, status_code=201)
async def write_handover(conn: Conn, user: Supervisor, body: HandoverIn,
                         address: ClientAddress) -> HandoverOut:
    if body.site is not None:
        check_site(user, body.site)
    elif not user.scope.all_sites:
        raise NotFound("site", "(every site)")
    async with conn.transaction():
        handover_id = await handovers.write(conn, user, body)
        await audit.record(conn, actor=user.username, action="handover.write",
                           target=str(handover_id), address=address,
                           detail={"site": body.site, "shift": body.shift})
    found = await handovers.one(conn, user.scope, handover_id)
    assert found is not None
    return found


@router.post("/handovers/{handover_id}/acknowledge", response_model=HandoverOut,
             responses={404: {}, 409: {"description": "already acknowledged, or one's own"}})
async def acknowledge_handover(conn: Conn, user: Supervisor, handover_id: HandoverId,
                               body: AckIn, address: ClientAddress) -> HandoverOut:
    """The next shift takes over: once, and not by the one who wrote it."""
    async with conn.transaction():
        found = await handovers.one(conn, user.scope, handover_id)
        if found is None:
            raise NotFound("handover", handover_id)
        if found.written_by == user.username:
            raise Conflict("the next shift acknowledges a handover, not the one who wrote it")
        if not await handovers.acknowledge(conn, handover_id, user.username, body.note):
            raise Conflict(f"handover {handover_id} is already acknowledged")
        await audit.record(conn, actor=user.username, action="handover.acknowledge",
                           target=str(handover_id), address=address)
    found = await handovers.one(conn, user.scope, handover_id)
    assert found is not None
    return found


@router.get("/handovers", response_model=list[HandoverOut])
async def search_handovers(
    conn: Conn, user: Supervisor, site: SiteQuery = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    since: datetime | None = None, until: datetime | None = None,
    unacknowledged: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[HandoverOut]:
    """Newest first; ``q`` is looked for in the notes, shift, names, open alarms and orders."""
    return await handovers.find(conn, user.scope, site=site, text=q, since=since, until=until,
                                unacknowledged=unacknowledged, limit=limit)


@router.get("/handovers/{handover_id}", response_model=HandoverOut, responses={404: {}})
async def get_handover(conn: Conn, user: Supervisor, handover_id: HandoverId) -> HandoverOut:
    found = await handovers.one(conn, user.scope, handover_id)
    if found is None:
        raise NotFound("handover", handover_id)
    return found
