"""The web pages, server-rendered with Jinja2 and made live by small plain scripts (no build
step): the duty-room board (/), a device (/devices/{name}), the technician's page (/tech),
the service desk's repair-request form (/desk), the monthly report (/reports) and the asset
ledger (/assets). A page is
a shell with the site's names; its script signs in against the API (bearer token kept in
sessionStorage), loads data from /api/v1 and follows /api/v1/stream. No page has an inline
script, inline event handler or style attribute: the Content-Security-Policy
(api.security_headers) forbids them. /docs is Swagger UI, started by a static script."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import ApiConfig, Config
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


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """The interactive API docs (FastAPI's own page has an inline script)."""
    return _render(request, "docs.html", {"title": request.app.title, "cdn": SWAGGER_CDN,
                                          "openapi_url": request.app.openapi_url})
