"""Server-Sent Events text of the live stream (api.stream), pure: one outbox event as an SSE
message, the ``ready`` message a stream starts with, the heartbeat comment, the
``signed_out`` message, and where a client asks to resume. No I/O."""

from __future__ import annotations

import json
from typing import Any

RETRY_MS = 3000
HEARTBEAT = b": heartbeat\n\n"
SIGNED_OUT = b'event: signed_out\ndata: {"reason": "token revoked or expired"}\n\n'


def format_event(event_id: int, kind: str, data: dict[str, Any]) -> str:
    """One SSE message: ``id``, ``event`` and a one-line JSON ``data``."""
    body = json.dumps({"id": event_id, "kind": kind, **data}, ensure_ascii=False,
                      separators=(",", ":"))
    return f"id: {event_id}\nevent: {kind}\ndata: {body}\n\n"


def ready(event_id: int) -> bytes:
    """The first message: where the stream starts (a page loads its snapshot after it), and
    how long a browser waits before reconnecting."""
    return (f"retry: {RETRY_MS}\nid: {event_id}\nevent: ready\n"
            f"data: {json.dumps({'id': event_id})}\n\n").encode()


def parse_cursor(last_event_id: str | None, after: int | None) -> int | None:
    """Where to resume: the Last-Event-ID header wins over ``?after=``; None means 'now'.
    A header that is not a non-negative integer is ignored (a browser sends back what it was
    given, so only a foreign client can send garbage)."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return after
