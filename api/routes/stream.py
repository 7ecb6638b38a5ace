"""GET /stream: Server-Sent Events of alarm, work-order and device-status events (see
api.stream and api.event_hub). Authenticated like every route, by the Authorization header:
the pages read it with fetch() and a small SSE parser, since EventSource cannot send headers.
Resume with the Last-Event-ID header or ``?after=<id>``; without either the stream starts at
the newest event. Any role may listen; each hears only the events of their scope (a changed
scope revokes the user's tokens, so the stream ends and the page signs in again). The request
holds a pooled connection only to check the token; the stream itself holds none. The token is
checked again every heartbeat period: once it is revoked (sign-out, password change,
deactivation, a new scope) or expired the stream sends ``signed_out`` and ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api import tokens
from api.deps import BearerToken, ClientAddress, CurrentUser, Pool
from api.event_hub import EventHub
from api.routes.devices import ID_PATTERN
from api.sse import parse_cursor
from api.stream import event_stream

router = APIRouter(tags=["stream"])


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
    address: ClientAddress,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    hub: EventHub = request.app.state.hub
    body = event_stream(pool, hub, after=parse_cursor(last_event_id, after), site=site,
                        token_digest=tokens.digest(token), client=f"{user.username} at {address}",
                        scope=user.scope)
    return StreamingResponse(
        body, media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
