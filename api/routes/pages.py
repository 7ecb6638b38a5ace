"""The web pages, server-rendered with Jinja2 and made live by small plain scripts (no build
step): the duty-room board (/), a device (/devices/{name}), the technician's page (/tech),
the service desk's repair-request form (/desk), the monthly report (/reports), the asset
ledger (/assets), a printable work order (/work-orders/{id}/print), the rosters (/rosters)
and the residents' notices (/notices); /public/{site}/notices shows the published notices
without sign-in (server-rendered, no script). A page is
a shell with the site's names; its script signs in against the API (bearer token kept in
sessionStorage), loads data from /api/v1 and follows /api/v1/stream. No page has an inline
script, inline event handler or style attribute: the Content-Security-Policy
(api.security_headers) forbids them. /docs is Swagger UI, started by a static script."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from api import i18n
from api.deps import ApiConfig, Config, PublicConn
from api.errors import NotFound
from api.notices import NOTICE_TZ, published
from api.routes.devices import ID_PATTERN
from api.vocabulary import N_

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parents[1] / "static"


def _context(config: ApiConfig, page: str, title: str, **extra: Any) -> dict[str, Any]:
    site = config.site
    return {
        "page": page,
        "title": title,
        "site_id": site.id if site else "",
        "site_name": (site.config.name or site.id) if site else "Facility",
        "buildings": [
            {"id": b.id, "name": b.name or b.id} for b in site.config.buildings
        ] if site else [],
        **extra,
    }


def page_language(request: Request) -> i18n.Language:
    """The page's language: the ``facility_lang`` cookie the pages set, else zh-CN."""
    return i18n.language(request.cookies.get(i18n.COOKIE)) or i18n.DEFAULT


def _render(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    templates: dict[str, Jinja2Templates] = request.app.state.templates
    catalogues: i18n.Catalogues = request.app.state.catalogues
    lang = page_language(request)
    title = catalogues.gettext(lang, context["title"]) % context.get("title_values", {})
    return templates[lang].TemplateResponse(request, template, {**context, "title": title})


@router.get("/sw.js")
async def service_worker() -> FileResponse:
    """The technician page's service worker (api/static/sw.js), served from the root so that
    its scope covers /tech and the API it keeps answers of."""
    return FileResponse(STATIC / "sw.js", media_type="text/javascript",
                        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})


@router.get("/manifest.webmanifest")
async def manifest(request: Request) -> JSONResponse:
    """The technician's page as an installable web app, named in the page's language."""
    catalogues: i18n.Catalogues = request.app.state.catalogues
    lang = page_language(request)
    return JSONResponse({
        "name": catalogues.gettext(lang, "My work orders"), "short_name": "Facility",
        "start_url": "/tech", "scope": "/", "display": "standalone", "lang": lang,
        "background_color": "#111418", "theme_color": "#1b1f24",
        "icons": [{"src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml",
                   "purpose": "any"}],
    }, media_type="application/manifest+json")


@router.get("/i18n/{lang}.json")
async def catalogue(request: Request, lang: i18n.Language) -> JSONResponse:
    """The pages' scripts' strings in ``lang`` (msgid -> text), from the same catalogue as the
    templates (api.i18n); public, like the page shells."""
    catalogues: i18n.Catalogues = request.app.state.catalogues
    return JSONResponse(catalogues.as_json(lang), headers={"Cache-Control": "no-cache"})


@router.get("/", response_class=HTMLResponse)
async def duty_room(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "duty_room.html", _context(config, "board", N_("Duty room")))


@router.get("/devices/{name}", response_class=HTMLResponse)
async def device_page(
    request: Request, config: Config, name: Annotated[str, PathParam(pattern=ID_PATTERN)]
) -> HTMLResponse:
    return _render(request, "device.html",
                   _context(config, "device", N_("Device %(name)s"),
                            title_values={"name": name}, device=name))


@router.get("/tech", response_class=HTMLResponse)
async def technician(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "tech.html", _context(config, "tech", N_("My work orders")))


@router.get("/desk", response_class=HTMLResponse)
async def service_desk(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "desk.html", _context(config, "desk", N_("Repair request")))


@router.get("/reports", response_class=HTMLResponse)
async def reports(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "reports.html", _context(config, "reports", N_("Monthly report")))


@router.get("/assets", response_class=HTMLResponse)
async def asset_ledger(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "assets.html", _context(config, "assets", N_("Asset ledger")))


@router.get("/work-orders/{work_order_id}/print", response_class=HTMLResponse)
async def work_order_print(
    request: Request, config: Config, work_order_id: Annotated[int, PathParam(ge=1, le=2**62)],
) -> HTMLResponse:
    """A printable work order (the browser's own print, or save as PDF there)."""
    return _render(request, "work_order_print.html",
                   _context(config, "print", N_("Work order #%(id)s"),
                            title_values={"id": work_order_id},
                            work_order_id=work_order_id))


@router.get("/rosters", response_class=HTMLResponse)
async def rosters_page(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "rosters.html", _context(config, "rosters", N_("Rosters")))


@router.get("/users", response_class=HTMLResponse)
async def users_page(request: Request, config: Config) -> HTMLResponse:
    """The admin's staff accounts: role, scope (sites and buildings), language, active."""
    return _render(request, "users.html", _context(config, "users", N_("Users and their estates")))


@router.get("/handover", response_class=HTMLResponse)
async def handover_page(request: Request, config: Config) -> HTMLResponse:
    """The duty room's shift handover log: write, acknowledge, search."""
    return _render(request, "handover.html", _context(config, "handover", N_("Shift handover")))


@router.get("/notices", response_class=HTMLResponse)
async def notices_page(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "notices.html", _context(config, "notices", N_("Notices to residents")))


@router.get("/public/{site}/notices", response_class=HTMLResponse)
async def public_notices(
    request: Request, config: Config, conn: PublicConn,
    site: Annotated[str, PathParam(pattern=ID_PATTERN)],
) -> HTMLResponse:
    """The site's published notices, for lobby screens and a link in the residents' chat
    group: no sign-in, read-only, nothing but the notices (refreshes itself every minute)."""
    if config.site is not None and site != config.site.id:
        raise NotFound("site", site)
    cur = await conn.execute("SELECT name FROM sites WHERE id = %s", (site,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("site", site)
    names = ({b.id: b.name or b.id for b in config.site.config.buildings}
             if config.site else {})
    items = [{"notice": n, "building": names.get(n.building, n.building)}
             for n in await published(conn, site)]
    return _render(request, "public_notices.html",
                   {"site_name": row[0] or site, "items": items,
                    "title": "住户通知 Notices",  # residents: both languages
                    "tz": NOTICE_TZ})


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """The interactive API docs (FastAPI's own page has an inline script)."""
    return _render(request, "docs.html", {"title": request.app.title,
                                          "openapi_url": request.app.openapi_url})
