"""The monthly report as PDF (issue 16 item 4) against a real PostgreSQL and Debian's
chromium: the 12-month trend counts orders and alarms in the months they belong to; the PDF
is a real PDF printed by chromium with the trend's charts (SVG in the HTML it prints); without
a chromium the route says so (503) instead of failing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.report_pdf import bars, previous_months, render_html
from api.settings import ApiSettings
from tests.integration.api_support import api_client, login, run_sql, seed_entrapment, seed_site

API = "/api/v1"
HAS_CHROMIUM = Path("/usr/bin/chromium").exists()


def test_previous_months_cross_the_year_and_bars_scale() -> None:
    assert previous_months("2026-02", 4) == ["2025-11", "2025-12", "2026-01", "2026-02"]
    chart = bars([2, None, 4], ["a", "b", "c"], width=300, height=116)
    assert [b.height for b in chart] == [50.0, 0.0, 100.0]
    assert chart[1].value == "—" and chart[2].x == pytest.approx(215.0)


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    site = seed_site(database_url, tmp_path)
    async with api_client(create_app(database_url, site=site)) as c:
        yield c


async def test_trend_and_pdf(client: httpx.AsyncClient, database_url: str) -> None:
    _alarm, wo = await seed_entrapment(database_url)
    month = datetime.now(UTC).strftime("%Y-%m")
    earlier = previous_months(month, 3)[0]
    run_sql(database_url, "UPDATE work_orders SET created_at = %s, resolved_at = %s,"
            " state = 'resolved' WHERE id = %s",
            (f"{earlier}-10T02:00:00Z", f"{earlier}-10T03:00:00Z", wo))
    manager = await login(client, "manager")
    resp = await client.get(f"{API}/reports/trend?site=tsite&month={month}", headers=manager)
    assert resp.status_code == 200, resp.text
    months = resp.json()
    assert [m["month"] for m in months] == previous_months(month)
    by_month = {m["month"]: m for m in months}
    assert by_month[earlier]["orders"] == 1 and by_month[earlier]["mttr_s"] == 3600.0
    assert by_month[month]["orders"] == 0 and by_month[month]["alarms"] == 1
    report = (await client.get(f"{API}/reports/monthly?site=tsite&month={month}",
                               headers=manager)).json()
    html = render_html(report, months, "Test Estate")
    assert html.count("<svg") == 5 and f"<td>{earlier}</td>" in html

    assert HAS_CHROMIUM, ("no /usr/bin/chromium: sudo apt-get install chromium (`make test`"
                          " installs it: scripts/system-packages)")
    resp = await client.get(f"{API}/reports/monthly.pdf?site=tsite&month={month}",
                            headers=manager, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.content.startswith(b"%PDF-") and len(resp.content) > 5000
    assert resp.headers["content-type"] == "application/pdf"
    operator = await login(client, "operator")
    assert (await client.get(f"{API}/reports/monthly.pdf?site=tsite&month={month}",
                             headers=operator)).status_code == 403


async def test_without_chromium_the_pdf_route_says_so(
    database_url: str, tmp_path: Path,
) -> None:
    site = seed_site(database_url, tmp_path)
    app = create_app(database_url, site=site, settings=ApiSettings(chromium=""))
    async with api_client(app) as client:
        manager = await login(client, "manager")
        resp = await client.get(f"{API}/reports/monthly.pdf?site=tsite&month=2026-01",
                                headers=manager)
        assert resp.status_code == 503 and "Chromium" in resp.json()["detail"]
