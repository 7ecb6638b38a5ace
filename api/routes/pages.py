"""GET /: the duty-room board, a server-rendered page whose small script logs in against the
API, keeps the token in sessionStorage and refreshes alarms, work orders and devices."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import Config

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def duty_room(request: Request, config: Config) -> HTMLResponse:
    site = config.site
    context = {
        "site_name": (site.config.name or site.id) if site else "Facility",
        "buildings": [
            {"id": b.id, "name": b.name or b.id} for b in site.config.buildings
        ] if site else [],
        "refresh_ms": 2000,
    }
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "duty_room.html", context)
