"""The duty-room board and the device page at portfolio size, in Debian's chromium: 100
estates, 1,000 buildings, 10,000 devices, registered from generated site files by the
services' own registry sync and filled as bench/portfolio.py does (statuses, latest values,
a year of history, active alarms, open maintenance), served by the real API.

The board signs in to a summary that matches the database, alarms grouped by site and
building, quiet buildings folded, maintenance apart from fault orders (due first); filters and
the device search work; an entrapment raised in a quiet building arrives live as a row in its
group. The time from the sign-in click to the rendered board and from the alarm's commit to
its row are measured and written to test-artifacts/portfolio_timings.txt (figures, not
assertions). The device page shows display names, enum labels (fault_code 3 reads
安全回路动作 / safety circuit), units, the device's orders, and two points on one chart. No
Content-Security-Policy violation on any page."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from playwright.async_api import Page, expect

from bench.portfolio import load_portfolio, populate, write_portfolio
from tests.integration.api_support import PASSWORD, run_sql, seed_entrapment
from tests.integration.browser_support import (
    ARTIFACTS,
    launch_chromium,
    screenshot,
    serving_api,
    wall_page,
)

ESTATES = 100  # 10 buildings of 10 devices each
PORTFOLIO_TIMEOUT_MS = 20_000
QUIET_DEVICE = "e001-b01-lift-1"  # building 1 of estate 1 has nothing wrong


def _telemetry(database_url: str, device: str, points: dict[str, float]) -> None:
    """An hour of one-minute readings of some points of a device."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT telemetry_ensure_partition(%s::date)", (now.date(),))
        conn.execute("SELECT telemetry_ensure_partition(%s::date)",
                     ((now - timedelta(hours=1)).date(),))
        for point, base in points.items():
            conn.execute(
                "INSERT INTO telemetry (time, point_id, value, quality)"
                " SELECT t, p.id, %s * (1 + 0.2 * sin(extract(epoch FROM t) / (300 * %s))), 0"
                " FROM points p JOIN devices d ON d.id = p.device_id,"
                " generate_series(%s::timestamptz - interval '59 min', %s, interval '1 min') t"
                " WHERE d.name = %s AND p.name = %s", (base, base, now, now, device, point))


async def test_board_and_device_page_at_portfolio_size(database_url: str, tmp_path: Path) -> None:
    portfolio = load_portfolio(write_portfolio(tmp_path / "sites", ESTATES))
    assert (portfolio.buildings, portfolio.devices) == (1000, 10_000)
    populate(database_url, portfolio, PASSWORD)
    run_sql(database_url, "UPDATE latest_values SET value = 3 FROM points p JOIN devices d"
            " ON d.id = p.device_id WHERE latest_values.point_id = p.id AND d.name = %s"
            " AND p.name = 'fault_code'", (QUIET_DEVICE,))
    _telemetry(database_url, QUIET_DEVICE, {"load_kg": 400.0, "speed_mps": 1.6})
    critical = run_sql(database_url, "SELECT count(*) FROM alarms WHERE state <> 'normal'"
                       " AND priority = 'critical'")[0][0]
    async with (serving_api(database_url, portfolio.sites[0], 15) as (url, _server),
                launch_chromium() as browser, wall_page(browser) as page):
        timings = await _board(page, url, database_url, critical)
        await _device_page(page, url)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "portfolio_timings.txt").write_text(
        "".join(f"{k} {v:.0f} ms\n" for k, v in timings.items()), encoding="utf-8")
    print(timings)


async def _board(page: Page, url: str, database_url: str, critical: int) -> dict[str, float]:
    await page.goto(url)
    await page.locator("#login input[name=username]").fill("operator")
    await page.locator("#login input[name=password]").fill(PASSWORD)
    started = time.perf_counter()
    await page.locator("#login button[type=submit]").click()
    await expect(page.locator("body")).to_have_attribute("data-board-ready", "yes",
                                                         timeout=PORTFOLIO_TIMEOUT_MS)
    sign_in_to_board = (time.perf_counter() - started) * 1000
    await expect(page.locator("#sum-critical")).to_have_text(str(critical))
    await expect(page.locator("#sum-buildings-of")).to_have_text("/ 1000")
    await expect(page.locator("#sum-devices-of")).to_have_text("/ 10000")
    groups = page.locator("#alarms .site-group")
    assert await groups.count() > 10
    # quiet buildings are folded: no device of building 1 of estate 1 on the board
    await expect(page.locator(f'#buildings [data-device="{QUIET_DEVICE}"]')).to_have_count(0)
    await expect(page.locator('#buildings [data-site="e001"] details.quiet')).to_have_count(1)
    # maintenance apart, due first
    dues = await page.locator("#maintenance tr[data-work-order-id]").count()
    assert dues > 10
    await expect(page.locator("#work-orders tr", has_text="月度保养")).to_have_count(0)
    await screenshot(page, "board_portfolio.png")
    await page.screenshot(path=ARTIFACTS / "board_portfolio_screen.png", animations="disabled")

    await page.locator("#f-site").select_option("e002")
    await expect(page.locator("#alarms .site-group")).to_have_count(1)
    await expect(page.locator("#alarms .site-group")).to_have_attribute("data-site", "e002")
    await page.screenshot(path=ARTIFACTS / "board_portfolio_site.png", animations="disabled")
    await page.locator("#f-site").select_option("")
    await page.locator("#search").fill("e003-b07-pump")
    result = page.locator("#search-results a.dev")
    await expect(result).to_have_count(1, timeout=PORTFOLIO_TIMEOUT_MS)
    await expect(result).to_have_attribute("data-device", "e003-b07-pumps")
    await page.locator("#search").fill("")

    await page.evaluate("window.__sameDocument = true")
    started = time.perf_counter()
    await seed_entrapment(database_url, QUIET_DEVICE)
    row = page.locator('#alarms [data-site="e001"] [data-building="b01"] tr',
                       has_text=QUIET_DEVICE)
    await expect(row).to_have_count(1, timeout=PORTFOLIO_TIMEOUT_MS)
    alarm_to_row = (time.perf_counter() - started) * 1000
    await expect(row).to_have_attribute("data-state", "unack")
    await expect(page.locator("body")).to_have_attribute("data-alerting", "yes")
    await expect(page.locator(f'#buildings [data-device="{QUIET_DEVICE}"]')).to_have_attribute(
        "data-state", "alarm", timeout=PORTFOLIO_TIMEOUT_MS)
    assert await page.evaluate("window.__sameDocument") is True
    await expect(page.locator("#board-error")).to_have_text("")
    return {"sign_in_to_board": sign_in_to_board, "alarm_to_row": alarm_to_row}


async def _device_page(page: Page, url: str) -> None:
    await page.goto(f"{url}/devices/{QUIET_DEVICE}")
    await expect(page.locator("#who")).to_have_text("operator (值班员)")
    fault = page.locator('#values tr[data-point="fault_code"]')
    await expect(fault).to_contain_text("故障代码", timeout=PORTFOLIO_TIMEOUT_MS)  # zh-CN only
    await expect(fault).not_to_contain_text("Fault code")
    await expect(fault.locator("td.value")).to_have_text("安全回路动作 (3)")
    await expect(page.locator('#values tr[data-point="load_kg"] td.value')).to_have_text(
        re.compile(r" kg$"))
    await expect(page.locator("#device-orders tr[data-work-order-id]")).not_to_have_count(0)
    await expect(page.locator("#device-alarms")).to_contain_text("电梯困人")
    await expect(page.locator("#chart .uplot")).to_have_count(1)
    await page.get_by_label(re.compile("运行速度")).check()
    await expect(page.locator("#chart .u-legend .u-series")).to_have_count(3)  # time + 2
    await expect(page.locator("#chart-info")).to_contain_text("个样本")
    await expect(page.locator("#board-error")).to_have_text("")
    await screenshot(page, "device_portfolio.png")
    await page.screenshot(path=ARTIFACTS / "device_portfolio_screen.png", animations="disabled")
