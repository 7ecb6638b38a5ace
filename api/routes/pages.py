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

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import ApiConfig, Config, PublicConn
from api.errors import NotFound
from api.notices import NOTICE_TZ, published
from api.routes.devices import ID_PATTERN
from api.security_headers import SWAGGER_CDN

router = APIRouter(include_in_schema=False)


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


def _render(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context)


@router.get("/", response_class=HTMLResponse)
async def duty_room(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "duty_room.html", _context(config, "board", "值班室 Duty room"))


@router.get("/devices/{name}", response_class=HTMLResponse)
async def device_page(
    request: Request, config: Config, name: Annotated[str, Path(pattern=ID_PATTERN)]
) -> HTMLResponse:
    return _render(request, "device.html",
                   _context(config, "device", f"设备 {name}", device=name))


@router.get("/tech", response_class=HTMLResponse)
async def technician(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "tech.html", _context(config, "tech", "我的工单 My work orders"))


@router.get("/desk", response_class=HTMLResponse)
async def service_desk(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "desk.html", _context(config, "desk", "业主报修 Repair request"))


@router.get("/reports", response_class=HTMLResponse)
async def reports(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "reports.html", _context(config, "reports", "月度报告 Monthly report"))


@router.get("/assets", response_class=HTMLResponse)
async def asset_ledger(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "assets.html", _context(config, "assets", "设备台账 Asset ledger"))


@router.get("/work-orders/{work_order_id}/print", response_class=HTMLResponse)
async def work_order_print(
    request: Request, config: Config, work_order_id: Annotated[int, Path(ge=1, le=2**62)],
) -> HTMLResponse:
    """A printable work order (the browser's own print, or save as PDF there)."""
    return _render(request, "work_order_print.html",
                   _context(config, "print", f"工单 #{work_order_id}",
                            work_order_id=work_order_id))


@router.get("/rosters", response_class=HTMLResponse)
async def rosters_page(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "rosters.html", _context(config, "rosters", "值班表 Rosters"))


@router.get("/notices", response_class=HTMLResponse)
async def notices_page(request: Request, config: Config) -> HTMLResponse:
    return _render(request, "notices.html", _context(config, "notices", "住户通知 Notices"))


@router.get("/public/{site}/notices", response_class=HTMLResponse)
async def public_notices(
    request: Request, config: Config, conn: PublicConn,
    site: Annotated[str, Path(pattern=ID_PATTERN)],
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
                   {"site_name": row[0] or site, "items": items, "title": "住户通知 Notices",
                    "tz": NOTICE_TZ})


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """The interactive API docs (FastAPI's own page has an inline script)."""
    return _render(request, "docs.html", {"title": request.app.title, "cdn": SWAGGER_CDN,
                                          "openapi_url": request.app.openapi_url})
