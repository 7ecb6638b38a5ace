"""The FastAPI application: ``create_app(database_url, site=...)`` builds it with its settings
passed in (no globals). Its lifespan checks that the database schema is current, opens a small
connection pool (no request holds a connection longer than its queries: api.deps) and the
event hub that reads the outbox once for every live stream (api.event_hub), and closes them at
shutdown. REST routes live under /api/v1 (OpenAPI at /docs and /openapi.json), the pages (duty
room, device, technician, service desk, reports) at /, their scripts, styles and vendored
libraries under /static. Every response carries the security headers of
api.security_headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
import jinja2
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api import i18n
from api.deps import ApiConfig
from api.errors import install_handlers
from api.event_hub import EventHub
from api.event_hub import running as running_hub
from api.idempotency import Idempotency
from api.routes import (
    alarms,
    assets,
    attachments,
    audit,
    auth,
    devices,
    handovers,
    health,
    notices,
    pages,
    reports,
    rosters,
    sites,
    stream,
    telemetry,
    users,
    work_orders,
)
from api.security_headers import SecurityHeaders
from api.settings import ApiSettings
from facility.db import migrate
from facility.db.connect import pool as db_pool
from facility.site import Site

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SWAGGER_FILES = Path(fastapi_offline.__file__).resolve().parent / "static"
API_PREFIX = "/api/v1"
POOL_MAX_SIZE = 8
POOL_TIMEOUT_S = 5.0


def _templates(catalogues: i18n.Catalogues, lang: i18n.Language) -> Jinja2Templates:
    """The page templates in one language (jinja2's i18n extension over the catalogue)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(), extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(catalogues.translations[lang], newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = lang
    return Jinja2Templates(env=env)


def create_app(
    database_url: str, *, site: Site | None = None, settings: ApiSettings | None = None
) -> FastAPI:
    """``settings`` default to the environment's (FACILITY_API_*)."""
    settings = settings if settings is not None else ApiSettings()
    config = ApiConfig(database_url=database_url, site=site, token_ttl=settings.token_ttl,
                       throttle=settings.throttle(), chromium=settings.chromium,
                       hub=settings.hub_limits())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate.check, database_url)
        pool = db_pool(database_url, max_size=POOL_MAX_SIZE, timeout_s=POOL_TIMEOUT_S,
                       name="api", application_name="api")
        await pool.open(wait=True, timeout=POOL_TIMEOUT_S)
        app.state.pool = pool
        log.info("api ready (pool of up to %d connections)", POOL_MAX_SIZE)
        try:
            hub = EventHub(database_url, pool, config.hub)
            await hub.prime()
            async with running_hub(hub):
                app.state.hub = hub
                yield
        finally:
            await pool.close()
            log.info("api stopped")

    app = FastAPI(
        title="Facility monitoring and maintenance API",
        version="1",
        description="Alarms, work orders, devices, telemetry and reports of the estate."
        " Every route but /api/v1/health needs `Authorization: Bearer <token>` from"
        " POST /api/v1/auth/token. See docs/api.md for roles and the live stream.",
        lifespan=lifespan,
        docs_url=None,  # pages.docs serves /docs without an inline script
        redoc_url=None,
    )
    app.state.config = config
    app.state.catalogues = catalogues = i18n.load()
    app.state.templates = {lang: _templates(catalogues, lang) for lang in i18n.LANGUAGES}
    install_handlers(app)
    for module in (health, auth, sites, devices, telemetry, alarms, work_orders, users, audit,
                   reports, stream, assets, notices, rosters, attachments, handovers):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(pages.router)
    # Swagger UI's files from their package (before /static, which would shadow the path)
    app.mount("/static/swagger", StaticFiles(directory=SWAGGER_FILES), name="swagger")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(Idempotency)  # inside SecurityHeaders: a replay gets the headers too
    app.add_middleware(SecurityHeaders)
    return app
