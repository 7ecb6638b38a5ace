"""The duty-room page in a real headless browser (Debian's chromium driven by playwright)
against the real API served on a loopback port and a real PostgreSQL: an operator signs in
through the form, sees the entrapment alarm and its work order, acknowledges the alarm and
sees its state change without a reload; an alarm raised afterwards appears by the live
refresh; a wrong password is answered on the page. Screenshots of the board at wall-screen
size go to test-artifacts/.

The async playwright API is used because the API server runs in the test's own event loop
(pytest-asyncio): the sync API would block that loop, and the server with it. No browser is
ever downloaded; without /usr/bin/chromium the tests are skipped (CI installs it)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from api.service import serve_api
from facility.embedded.ports import free_port
from facility.procedures import load_procedures, upsert_procedures
from rules.alarms import raise_alarm
from rules.engine import RaiseAlarm
from rules.work_orders import open_for_alarm
from tests.integration.api_support import PASSWORD, ROOT, seed_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
WALL_SCREEN = {"width": 1920, "height": 1080}
ARTIFACTS = ROOT / "test-artifacts"
START_TIMEOUT_S = 10
UI_TIMEOUT_MS = 8_000  # several 2 s refresh periods
ENTRAPMENT_TITLE = "电梯困人处理流程"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium);"
    " .ci/run does so in CI",
)


@dataclass(frozen=True, slots=True)
class Served:
    url: str
    database_url: str
    alarm_id: int
    work_order_id: int


def _raise(source: str, alarm_type: str, message: str, procedure: str | None) -> RaiseAlarm:
    return RaiseAlarm(
        source=source, device=source, gateway=None, rule_id=alarm_type, alarm_type=alarm_type,
        priority="critical", procedure=procedure, message=message, detail={},
        at=datetime.now(UTC),
    )


async def _device_id(conn: psycopg.AsyncConnection[Any], name: str) -> int:
    cur = await conn.execute("SELECT id FROM devices WHERE name = %s", (name,))
    row = await cur.fetchone()
    assert row is not None, name
    return int(row[0])


async def _raise_alarm(
    database_url: str, source: str, alarm_type: str, message: str
) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        alarm, _ = await raise_alarm(conn, "tsite", await _device_id(conn, source),
                                     _raise(source, alarm_type, message, None))
    return alarm.id


async def _seed_entrapment(database_url: str) -> tuple[int, int]:
    """An active unacknowledged entrapment on a-elevator-1 and its open work order."""
    procedures = load_procedures(ROOT / "procedures")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await upsert_procedures(conn, procedures)
        device_id = await _device_id(conn, "a-elevator-1")
        act = _raise("a-elevator-1", "entrapment", "电梯困人 Passengers trapped",
                     "elevator_entrapment")
        alarm, _ = await raise_alarm(conn, "tsite", device_id, act)
        [created] = await open_for_alarm(
            conn, site_id="tsite", device_id=device_id, source="a-elevator-1",
            fault="entrapment", alarm_id=alarm.id, procedure=procedures["elevator_entrapment"],
            description=act.message, now=act.at,
        )
    assert created.work_order_id is not None
    return alarm.id, created.work_order_id


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    site = seed_site(database_url, tmp_path)
    alarm_id, wo_id = await _seed_entrapment(database_url)
    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(
        serve_api(database_url, "127.0.0.1", port, site=site, ready=ready), name="api[browser]"
    )
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            await ready.wait()
        yield Served(f"http://127.0.0.1:{port}", database_url, alarm_id, wo_id)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=WALL_SCREEN, locale="zh-CN")
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _sign_in(page: Page, url: str, username: str, password: str) -> None:
    await page.goto(url)
    form = page.locator("#login")
    await expect(form).to_be_visible()
    await form.get_by_label("Username").fill(username)
    await form.get_by_label("Password").fill(password)
    await form.get_by_role("button", name="Sign in").click()


async def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # The unacknowledged critical badge blinks: stop it so every shot shows it.
    await page.screenshot(path=ARTIFACTS / name, animations="disabled")


async def test_operator_acknowledges_and_sees_live_updates(served: Served, page: Page) -> None:
    await _sign_in(page, served.url, "operator", PASSWORD)
    await expect(page.locator("#board")).to_be_visible()
    await expect(page.locator("#login")).to_be_hidden()
    await expect(page.locator("#who")).to_have_text("operator (operator)")
    # A marker that a reload or navigation would wipe out.
    await page.evaluate("window.__sameDocument = true")

    alarm = page.locator("#alarms tr", has_text="a-elevator-1")
    await expect(alarm).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect(alarm).to_contain_text("Passengers trapped")
    await expect(alarm).to_contain_text("critical")
    await expect(alarm.locator("td").nth(3)).to_have_text("unack")
    await expect(page.locator("#alarm-count")).to_have_text("(1 unacknowledged)")

    order = page.locator("#work-orders tr", has_text=ENTRAPMENT_TITLE)
    await expect(order).to_have_count(1)
    await expect(order.locator("td").first).to_have_text(str(served.work_order_id))
    await expect(order).to_contain_text("a-elevator-1")
    await expect(order.locator("td").nth(3)).to_have_text("open")
    await expect(page.locator("#buildings")).to_contain_text("Building A")
    await _screenshot(page, "duty_room_board.png")

    await alarm.get_by_role("button", name=re.compile("Acknowledge")).click()
    await expect(alarm.locator("td").nth(3)).to_have_text("ack", timeout=UI_TIMEOUT_MS)
    await expect(alarm.get_by_role("button")).to_have_count(0)
    await expect(page.locator("#alarm-count")).to_have_text("(0 unacknowledged)")
    await expect(page.locator("#board-error")).to_have_text("")
    async with await psycopg.AsyncConnection.connect(served.database_url) as conn:
        cur = await conn.execute("SELECT state, acked_by FROM alarms WHERE id = %s",
                                 (served.alarm_id,))
        assert await cur.fetchall() == [("ack", "operator")]

    fire = await _raise_alarm(served.database_url, "a-firepanel", "fire_alarm",
                              "火灾报警 Fire alarm")
    new_row = page.locator("#alarms tr", has_text="a-firepanel")
    await expect(new_row).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect(new_row).to_contain_text("Fire alarm")
    await expect(new_row.locator("td").nth(3)).to_have_text("unack")
    await expect(new_row.get_by_role("button", name=re.compile("Acknowledge"))).to_be_visible()
    await expect(page.locator("#alarm-count")).to_have_text("(1 unacknowledged)")
    assert await page.evaluate("window.__sameDocument") is True
    assert fire != served.alarm_id
    await _screenshot(page, "duty_room_board_live.png")


async def test_wrong_password_is_reported_on_the_page(served: Served, page: Page) -> None:
    await _sign_in(page, served.url, "operator", "not the password")
    await expect(page.locator("#login-error")).to_have_text("incorrect username or password")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#board")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('token')") is None
    await _screenshot(page, "duty_room_login_error.png")

    await page.locator("#login").get_by_label("Password").fill(PASSWORD)
    await page.locator("#login").get_by_role("button", name="Sign in").click()
    await expect(page.locator("#board")).to_be_visible()
    await expect(page.locator("#login-error")).to_have_text("")
