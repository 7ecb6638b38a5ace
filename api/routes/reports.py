"""GET /reports/monthly (JSON) and /reports/monthly.csv: the monthly PDCA review of one site
(api.reports), for managers and the admin whose scope holds the whole site (404 otherwise).
``month`` is YYYY-MM, ``tz`` an IANA time zone that sets where the month begins and ends
(default UTC)."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response

from api.deps import Authoriser, Config, Conn, Pool
from api.errors import ApiError, NotFound
from api.report_pdf import PdfUnavailable, chromium_path, print_pdf, render_html, trend
from api.reports import monthly, to_csv
from api.routes.devices import ID_PATTERN
from api.scoping import check_place
from facility.users import User

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


async def _report(conn: Any, user: User, site: str, month: str, tz: str) -> dict[str, Any]:
    check_place(user, site, None)
    cur = await conn.execute("SELECT 1 FROM sites WHERE id = %s", (site,))
    if await cur.fetchone() is None:
        raise NotFound("site", site)
    return await monthly(conn, site, month, _zone(tz))


@router.get("/reports/monthly", responses={400: {}, 404: {}})
async def monthly_report(
    conn: Conn, user: Authoriser, site: Site, month: Month, tz: Tz = "UTC"
) -> dict[str, Any]:
    """MTTA, MTTR, SLA and PM compliance, orders by trade and cause, alarm load."""
    return await _report(conn, user, site, month, tz)


@router.get("/reports/monthly.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}, 400: {}, 404: {}})
async def monthly_report_csv(
    conn: Conn, user: Authoriser, site: Site, month: Month, tz: Tz = "UTC"
) -> Response:
    report = await _report(conn, user, site, month, tz)
    return Response(
        to_csv(report), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="report-{site}-{month}.csv"'},
    )


@router.get("/reports/trend", responses={400: {}, 404: {}})
async def monthly_trend(
    conn: Conn, user: Authoriser, site: Site, month: Month, tz: Tz = "UTC"
) -> list[dict[str, Any]]:
    """The 12 months ending with ``month``: alarms, orders, MTTA, MTTR, SLA resolve."""
    check_place(user, site, None)
    cur = await conn.execute("SELECT 1 FROM sites WHERE id = %s", (site,))
    if await cur.fetchone() is None:
        raise NotFound("site", site)
    return await trend(conn, site, month, _zone(tz))


@router.get("/reports/monthly.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}, 400: {}, 404: {}, 503: {}})
async def monthly_report_pdf(
    pool: Pool, user: Authoriser, config: Config, site: Site, month: Month, tz: Tz = "UTC"
) -> Response:
    """The month's report with its charts and the 12-month trend, printed by headless
    Chromium (503 when the server has none: FACILITY_API_CHROMIUM). The database connection
    is given back before printing (up to a minute)."""
    async with pool.connection() as conn:
        report = await _report(conn, user, site, month, tz)
        months = await trend(conn, site, month, _zone(tz))
        cur = await conn.execute("SELECT name FROM sites WHERE id = %s", (site,))
        row = await cur.fetchone()
    chromium = chromium_path(config.chromium)
    if chromium is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "no Chromium on the server to print the PDF"
                            " (FACILITY_API_CHROMIUM); print the report page instead")
    html = render_html(report, months, (row[0] if row else "") or site)
    try:
        pdf = await print_pdf(html, chromium)
    except PdfUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, exc.reason) from exc
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="report-{site}-{month}.pdf"'})
