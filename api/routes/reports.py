"""GET /reports/monthly (JSON) and /reports/monthly.csv: the monthly PDCA review of one site
(api.reports), for managers and the admin. ``month`` is YYYY-MM, ``tz`` an IANA time zone
that sets where the month begins and ends (default UTC)."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import Authoriser, Conn
from api.errors import ApiError, NotFound
from api.reports import monthly, to_csv
from api.routes.devices import ID_PATTERN

router = APIRouter(tags=["reports"])
MONTH = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"
Month = Annotated[str, Query(pattern=MONTH, description="YYYY-MM")]
Site = Annotated[str, Query(pattern=ID_PATTERN)]
Tz = Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$")]


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ApiError(f"unknown time zone {tz}") from None


async def _report(conn: Any, site: str, month: str, tz: str) -> dict[str, Any]:
    cur = await conn.execute("SELECT 1 FROM sites WHERE id = %s", (site,))
    if await cur.fetchone() is None:
        raise NotFound("site", site)
    return await monthly(conn, site, month, _zone(tz))


@router.get("/reports/monthly", responses={400: {}, 404: {}})
async def monthly_report(
    conn: Conn, user: Authoriser, site: Site, month: Month, tz: Tz = "UTC"
) -> dict[str, Any]:
    """MTTA, MTTR, SLA and PM compliance, orders by trade and cause, alarm load."""
    return await _report(conn, site, month, tz)


@router.get("/reports/monthly.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}, 400: {}, 404: {}})
async def monthly_report_csv(
    conn: Conn, user: Authoriser, site: Site, month: Month, tz: Tz = "UTC"
) -> Response:
    report = await _report(conn, site, month, tz)
    return Response(
        to_csv(report), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="report-{site}-{month}.csv"'},
    )
