"""Serving the API: ``serve_api`` runs uvicorn inside an event loop, sets ``ready`` once
it listens, and shuts down gracefully when cancelled (live streams end at once, other
requests in progress get ``GRACEFUL_SHUTDOWN_S``); ``run_api`` (the ``facility api``
command) runs it under ``facility.runner`` until SIGTERM/SIGINT. A server that cannot
start (schema behind, database unreachable, port taken) raises ApiStartFailed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.event_hub import EventHub
from facility.db.migrate import check
from facility.runner import run_service
from facility.site import Site

log = logging.getLogger(__name__)
READY_POLL_S = 0.05
GRACEFUL_SHUTDOWN_S = 3


class ApiStartFailed(RuntimeError):
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(f"the API on {host}:{port} failed to start (see the log)")


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, lifespan="on",
        log_config=None, access_log=False,
        # Requests in progress at shutdown get this long (live streams are ended first).
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def run_api(database_url: str, host: str, port: int, *, site: Site | None = None) -> int:
    """Serve in this process until SIGINT/SIGTERM (through ``facility.runner``: the stop is
    bounded like every service's); the exit status. The database and its schema are checked
    first, so an unreachable database or a schema that is behind is one clear error
    (psycopg.OperationalError / SchemaBehind) rather than uvicorn's start-up traceback."""
    check(database_url)
    try:
        return run_service(serve_api(database_url, host, port, site=site))
    except ApiStartFailed as exc:
        log.error("%s", exc)
        return 1


async def _serve(server: uvicorn.Server, host: str, port: int) -> None:
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn exits the process when start-up fails
        raise ApiStartFailed(host, port) from exc
    if not server.started:
        raise ApiStartFailed(host, port)


async def serve_api(
    database_url: str,
    host: str,
    port: int,
    *,
    site: Site | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled; ``ready`` is set once the socket listens."""
    app = create_app(database_url, site=site)
    server = _EmbeddedServer(_config(app, host, port))
    serving = asyncio.create_task(_serve(server, host, port), name=f"api[{host}:{port}]")
    try:
        # uvicorn exposes only a `started` flag, no event to wait on.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(READY_POLL_S)
        if server.started and ready is not None:
            ready.set()
        await asyncio.shield(serving)
    finally:
        hub: EventHub | None = getattr(app.state, "hub", None)
        if hub is not None:  # live streams end now and cleanly, not cut at the grace's end
            await hub.close()
        server.should_exit = True
        await serving
