"""GET /stream: Server-Sent Events of alarm, work-order and device-status events (see
api.stream). Authenticated like every route, by the Authorization header: the pages read it
with fetch() and a small SSE parser, since EventSource cannot send headers. Resume with the
Last-Event-ID header or ``?after=<id>``; without either the stream starts at the newest
event. Any role may listen. The token is checked again at every heartbeat: once it is revoked
(sign-out, password change, deactivation) or expired the stream sends ``signed_out`` and
ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api import tokens
from api.deps import BearerToken, CurrentUser, Pool
from api.routes.devices import ID_PATTERN
from api.stream import EventHub, event_stream, parse_cursor

router = APIRouter(tags=["stream"])
HEARTBEAT_S = 15.0


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "an endless text/event-stream"}},
)
async def stream(
    request: Request,
    pool: Pool,
    user: CurrentUser,
    token: BearerToken,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    hub: EventHub = request.app.state.hub
    heartbeat_s: float = getattr(request.app.state, "heartbeat_s", HEARTBEAT_S)

    async def still_valid() -> bool:
        async with pool.connection() as conn:
            return await tokens.user_for_token(conn, token) is not None

    body = event_stream(pool, hub, cursor=parse_cursor(last_event_id, after), site=site,
                        heartbeat_s=heartbeat_s, still_valid=still_valid)
    return StreamingResponse(
        body, media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
