"""The pages in a real headless browser (Debian's chromium driven by playwright) against the
real API served on a loopback port and a real PostgreSQL.

On the wall-screen board an operator signs in, then an entrapment is raised by the rules
service's own functions: it appears live (the stream, no reload), with the audible alert on,
and its work order with an SLA countdown; the operator acknowledges it and the alert stops;
when the server goes away the disconnected banner shows. On a phone-sized viewport the
technician accepts the order, reports arrival, ticks the required steps (one with a note)
and resolves it. A wrong password is answered on the page. Every page (board, device,
technician, desk, reports) runs under the API's Content-Security-Policy without a single
violation on the console, and Sign out revokes the token on the server. Screenshots go to
test-artifacts/.

The async playwright API is used because the API server runs in the test's own event loop
(pytest-asyncio): the sync API would block that loop, and the server with it. No browser is
ever downloaded; `make test` installs /usr/bin/chromium (scripts/system-packages)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from playwright.async_api import Browser, Page, expect

from tests.integration.api_support import PASSWORD, run_sql, seed_entrapment, seed_site
from tests.integration.browser_support import (
    ENTRAPMENT_TITLE,
    UI_TIMEOUT_MS,
    acknowledge_on_board,
    arrive_tick_and_resolve,
    new_phone,
    screenshot,
    serving_api,
    sign_in,
    wait_in_page,
    watch_csp,
)

START_TIMEOUT_S = 10
NOTE = "7楼, 2人, 已安抚 two passengers, calm"



@dataclass(slots=True)
class Served:
    url: str
    database_url: str
    server: asyncio.Task[None]


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    site = seed_site(database_url, tmp_path)
    async with serving_api(database_url, site, START_TIMEOUT_S) as (url, server):
        yield Served(url, database_url, server)


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    context = await new_phone(browser)
    # as on a phone reaching the server over plain http at its LAN address (no secure
    # context): no crypto.randomUUID for the outbox's idempotency keys
    await context.add_init_script("delete Crypto.prototype.randomUUID;")
    try:
        page = await context.new_page()
        violations = watch_csp(page)
        yield page
        assert violations == []
    finally:
        await context.close()


async def test_operator_sees_an_entrapment_live_and_acknowledges_it(
    served: Served, page: Page
) -> None:
    await sign_in(page, served.url, "operator", PASSWORD)
    await expect(page.locator("#board")).to_be_visible()
    await expect(page.locator("#who")).to_have_text("operator (值班员)")
    await expect(page.locator("body")).to_have_attribute("data-live", "yes")
    await expect(page.locator("#stream-banner")).to_be_hidden()
    await expect(page.locator("#alarm-count")).to_have_text("(0 条未确认)")
    await expect(page.locator("body")).to_have_attribute("data-alerting", "no")
    await expect(page.locator("#buildings")).to_contain_text("Building A")
    # A marker that a reload or navigation would wipe out.
    await page.evaluate("window.__sameDocument = true")

    alarm_id, wo_id = await seed_entrapment(served.database_url)  # as the rules service does
    alarm = page.locator("#alarms tr", has_text="a-elevator-1")
    await expect(alarm).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect(alarm).to_contain_text("电梯困人")
    await expect(alarm.locator(".prio-critical")).to_have_text("紧急")  # zh-CN, the default
    await expect(alarm).to_have_attribute("data-state", "unack")
    await expect(alarm.locator("td.state")).to_have_text("未确认")
    await expect(page.locator("#alarm-count")).to_have_text("(1 条未确认)")
    await expect(page.locator("body")).to_have_attribute("data-alerting", "yes")
    await expect(page.locator("#alerting")).to_be_visible()
    order = page.locator(f'#work-orders tr[data-work-order-id="{wo_id}"]')
    await expect(order).to_contain_text(ENTRAPMENT_TITLE, timeout=UI_TIMEOUT_MS)
    await expect(order).to_have_attribute("data-state", "open")
    await expect(order.locator("td.sla")).to_have_text(re.compile(r"^接单 \d+:\d\d$"))
    # the procedure's first steps are timed from the alarm: their countdown runs already
    await expect(order.locator("td.sla-step")).to_have_text(re.compile(r"^步骤 \d+:\d\d$"))
    await expect(page.locator('#buildings [data-device="a-elevator-1"]')).to_have_attribute(
        "data-state", "alarm")
    await screenshot(page, "duty_room_board.png")

    await acknowledge_on_board(page, alarm)
    await expect(page.locator("#alarm-count")).to_have_text("(0 条未确认)")
    assert run_sql(served.database_url, "SELECT state, acked_by FROM alarms WHERE id = %s",
                   (alarm_id,)) == [("ack", "operator")]
    assert await page.evaluate("window.__sameDocument") is True
    await screenshot(page, "duty_room_board_acknowledged.png")

    served.server.cancel()  # the API goes away: the board says so
    with contextlib.suppress(asyncio.CancelledError):
        await served.server
    await expect(page.locator("#stream-banner")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await screenshot(page, "duty_room_disconnected.png")


async def test_technician_works_the_order_on_a_phone(served: Served, phone: Page) -> None:
    _alarm_id, wo_id = await seed_entrapment(served.database_url)
    run_sql(served.database_url, "UPDATE work_orders SET state = 'assigned',"
            " assignee = 'technician' WHERE id = %s", (wo_id,))
    await sign_in(phone, f"{served.url}/tech", "technician", PASSWORD)
    card = phone.locator(f'#mine article[data-work-order-id="{wo_id}"]')
    await expect(card).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(card).to_contain_text(ENTRAPMENT_TITLE)
    await expect(card.locator(".sla")).to_have_text(re.compile(r"^接单 "))
    await expect(card.locator(".step-due")).to_have_text(re.compile(r"^步骤 \d+:\d\d$"))
    await screenshot(phone, "technician_assigned.png")

    await card.get_by_role("button", name="接单").click()
    required = [seq for seq, needed in await run_steps(served.database_url, wo_id) if needed]
    await arrive_tick_and_resolve(phone, card, required, NOTE, "technician_page.png")

    assert run_sql(served.database_url, "SELECT state, assignee FROM work_orders WHERE id = %s",
                   (wo_id,)) == [("resolved", "technician")]
    notes = run_sql(served.database_url, "SELECT done_by, note FROM work_order_steps"
                    " WHERE work_order_id = %s AND required ORDER BY seq", (wo_id,))
    assert all(by == "technician" for by, _ in notes)
    assert notes[0][1] == NOTE
    events = [r[0] for r in run_sql(served.database_url, "SELECT event FROM work_order_events"
                                    " WHERE work_order_id = %s ORDER BY id", (wo_id,))]
    assert events[:3] == ["created", "accepted", "arrived"] and events[-1] == "resolved"


async def test_a_live_update_while_a_note_is_typed_keeps_the_text_and_the_focus(
    served: Served, phone: Page
) -> None:
    """Any work-order event re-renders the technician's cards; the note being typed stays, keeps
    its focus (typing goes on into it) and is the note the step is ticked with."""
    _alarm, wo_id = await seed_entrapment(served.database_url)
    run_sql(served.database_url, "UPDATE work_orders SET state = 'on_site',"
            " assignee = 'technician' WHERE id = %s", (wo_id,))
    await sign_in(phone, f"{served.url}/tech", "technician", PASSWORD)
    seq = next(s for s, needed in await run_steps(served.database_url, wo_id) if needed)
    step = phone.locator(f'#mine article[data-work-order-id="{wo_id}"] li[data-seq="{seq}"]')
    note = step.locator("input.note")
    await note.click(timeout=UI_TIMEOUT_MS)
    await phone.keyboard.type("两人已")

    _other_alarm, other = await seed_entrapment(served.database_url, "b-elevator-1")
    await expect(phone.locator(f'#pool article[data-work-order-id="{other}"]')).to_be_visible(
        timeout=UI_TIMEOUT_MS)  # the event re-rendered the lists
    await expect(note).to_be_focused()
    await phone.keyboard.type("救出")
    await expect(note).to_have_value("两人已救出")
    await step.get_by_role("checkbox").check()
    await expect(step).to_have_class(re.compile(r"\bdone\b"), timeout=UI_TIMEOUT_MS)
    assert run_sql(served.database_url, "SELECT note FROM work_order_steps"
                   " WHERE work_order_id = %s AND seq = %s", (wo_id, seq)) == [("两人已救出",)]


async def run_steps(database_url: str, wo_id: int) -> list[tuple[int, bool]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT seq, required FROM work_order_steps"
                                 " WHERE work_order_id = %s ORDER BY seq", (wo_id,))
        return [(int(r[0]), bool(r[1])) for r in await cur.fetchall()]


async def test_wrong_password_is_reported_on_the_page(served: Served, page: Page) -> None:
    await sign_in(page, served.url, "operator", "not the password")
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误")  # in zh-CN
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#board")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('token')") is None
    await screenshot(page, "duty_room_login_error.png")

    await page.locator("#login input[name=password]").fill(PASSWORD)
    await page.locator("#login button[type=submit]").click()
    await expect(page.locator("#board")).to_be_visible()
    await expect(page.locator("#login-error")).to_have_text("")


async def test_every_page_runs_under_the_csp_and_sign_out_revokes_the_token(
    served: Served, page: Page
) -> None:
    """As admin (who may load everything): the board, a device with its chart, the technician
    page, the desk and a report with its bars; the console shows no CSP violation (the page
    fixture fails the test otherwise). Then Sign out: the token is dead on the server too."""
    await seed_entrapment(served.database_url)
    await sign_in(page, served.url, "admin", PASSWORD)
    await expect(page.locator("body")).to_have_attribute("data-live", "yes")
    await expect(page.locator("#alarms tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    csp = (await page.request.get(served.url)).headers["content-security-policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    for path, ready in (("/devices/a-elevator-1", "#chart .uplot"),
                        ("/tech", "#pool article"), ("/desk", "#who:has-text('admin')")):
        await page.goto(served.url + path)
        await expect(page.locator(ready).first).to_be_attached(timeout=UI_TIMEOUT_MS)
    await page.goto(served.url + "/reports")
    month = run_sql(served.database_url,
                    "SELECT to_char(created_at, 'YYYY-MM') FROM work_orders LIMIT 1")[0][0]
    await page.locator("#month").fill(month)
    await page.get_by_role("button", name="查看").click()
    bars = page.locator("#report .bar")
    await expect(bars.first).to_be_visible(timeout=UI_TIMEOUT_MS)
    await wait_in_page(page,  # the widths set through the CSSOM took effect
                       "[...document.querySelectorAll('#report .bar')]"
                       ".some((b) => b.getBoundingClientRect().width > 0)")
    await expect(page.locator("#board-error")).to_have_text("")

    token = await page.evaluate("sessionStorage.getItem('token')")
    await page.get_by_role("button", name="退出").click()
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('token')") is None
    me = await page.request.get(f"{served.url}/api/v1/me",
                                headers={"Authorization": f"Bearer {token}"})
    assert me.status == 401
