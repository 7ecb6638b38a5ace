"""The maintenance pages of issue 16 in a real headless browser (Debian's chromium driven by
playwright) against the real API on a loopback port and a real PostgreSQL, each under the
API's Content-Security-Policy without a single violation on the console.

Photos: on a phone the technician on the order uploads a photo to it from the technician's
page and sees it on the card (fetched with the token, shown from a data: URL).
Asset ledger (/assets): a manager imports a ledger CSV from a file, opens a device, changes
its contractor's phone and saves; the inspection falling due is listed; an operator sees the
ledger read-only (no import, the form disabled). Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.integration.api_support import PASSWORD, run_sql, seed_entrapment, seed_site
from tests.integration.browser_support import (
    UI_TIMEOUT_MS,
    new_phone,
    screenshot,
    serving_api,
    sign_in,
    watch_csp,
)

START_TIMEOUT_S = 10


@dataclass(slots=True)
class Served:
    url: str
    database_url: str


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    site = seed_site(database_url, tmp_path)
    async with serving_api(database_url, site, START_TIMEOUT_S) as (url, _server):
        yield Served(url, database_url)


async def test_a_manager_imports_and_edits_the_ledger_an_operator_reads_it(
    served: Served, page: Page,
) -> None:
    due = (date.today() + timedelta(days=12)).isoformat()
    csv = (f"device,model,manufacturer,registration_code,contractor,contractor_phone,"
           f"inspection_due\na-elevator-1,MRL 3000,KONE,31103301002012080012,维保A,"
           f"400-1,{due}\n")
    await sign_in(page, f"{served.url}/assets", "manager", PASSWORD)
    await expect(page.locator("#import-panel")).to_be_visible()
    await page.locator("#csv-file").set_input_files(
        files=[{"name": "ledger.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
    await page.get_by_role("button", name="导入").click()
    await expect(page.locator("#imported")).to_contain_text("已导入 1 条", timeout=UI_TIMEOUT_MS)
    row = page.locator('#assets tr[data-device="a-elevator-1"]')
    await expect(row).to_contain_text("31103301002012080012")
    await expect(page.locator('#due li[data-device="a-elevator-1"]')).to_contain_text("12 天")
    await row.locator("a").click()
    form = page.locator("#asset-form")
    await expect(form).to_be_visible()
    await form.get_by_label("维保电话").fill("400-800-1234")
    await form.get_by_role("button", name="保存", exact=True).click()
    await expect(page.locator("#saved")).to_have_text("已保存", timeout=UI_TIMEOUT_MS)
    await expect(row).to_contain_text("400-800-1234")
    await screenshot(page, "asset_ledger.png")
    assert run_sql(served.database_url, "SELECT contractor_phone, updated_by FROM device_assets"
                   " WHERE device = 'a-elevator-1'") == [("400-800-1234", "manager")]

    await page.locator("#sign-out").click()
    await sign_in(page, f"{served.url}/assets#a-elevator-1", "operator", PASSWORD)
    await expect(page.locator("#asset-form")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#import-panel")).to_be_hidden()
    await expect(page.locator("#asset-form").get_by_label("维保电话")).to_be_disabled()
    await expect(page.locator("#asset-form").get_by_label("维保电话")).to_have_value(
        "400-800-1234")


async def test_the_duty_room_publishes_an_outage_notice_and_the_public_page_shows_it(
    served: Served, page: Page, browser: Browser,
) -> None:
    # an outage alarm as the rules service writes it: the database drafts the notice
    run_sql(served.database_url,
            "INSERT INTO alarms (site_id, device_id, source, alarm_type, rule_id, priority,"
            " state, active, message, raised_at) SELECT site_id, id, name, 'water_outage',"
            " 'water_outage', 'high', 'unack', true, '意外停水', now() FROM devices"
            " WHERE name = 'a-elevator-1'")
    await sign_in(page, f"{served.url}/notices", "operator", PASSWORD)
    row = page.locator('#notices tr[data-state="draft"]')
    await expect(row).to_contain_text("停水通知 Water outage notice", timeout=UI_TIMEOUT_MS)
    await row.locator("a").click()
    form = page.locator("#notice-form")
    await form.get_by_label("正文").fill("一号楼水管抢修停水 预计今晚恢复。")
    await form.get_by_label("预计恢复时间").fill("2026-05-01T18:30")
    await page.locator("#publish").click()
    await expect(page.locator("#notice-state")).to_have_text("已发布", timeout=UI_TIMEOUT_MS)
    await screenshot(page, "notices.png")

    public_context = await browser.new_context(viewport={"width": 390, "height": 844})
    try:
        public = await public_context.new_page()
        violations = watch_csp(public)
        await public.goto(f"{served.url}/public/tsite/notices")
        notice = public.locator("article.notice")
        await expect(notice).to_have_count(1)
        await expect(notice).to_contain_text("一号楼水管抢修停水")
        await expect(notice).to_contain_text("Building A")
        await expect(public.locator("#login")).to_have_count(0)  # nothing else of the platform
        await screenshot(public, "public_notices.png")
        assert violations == []
    finally:
        await public_context.close()

    await page.locator("#close-notice").click()
    await expect(page.locator("#notice-state")).to_have_text("已关闭", timeout=UI_TIMEOUT_MS)


def seed_roster(database_url: str) -> None:
    """A plumbing roster of the test site as the rules service stores its dispatch file."""
    for user in ("tech-plumbing-1", "technician"):
        run_sql(database_url, "INSERT INTO dispatch_staff (site_id, username, display_name)"
                " VALUES ('tsite', %s, %s)", (user, user))
    body = ('{"shifts": [{"name": "day", "days": [1,2,3,4,5,6,7], "start": "08:00:00",'
            ' "end": "20:00:00", "on_call": ["tech-plumbing-1"]}], "backup": [],'
            ' "channels": []}')
    run_sql(database_url, "INSERT INTO dispatch_rosters (site_id, roster, timezone, body)"
            " VALUES ('tsite', 'plumbing', 'Asia/Shanghai', %s::jsonb)", (body,))
    run_sql(database_url, "INSERT INTO dispatch_shifts (site_id, roster, seq, name, days,"
            " start_time, end_time, on_call) VALUES ('tsite', 'plumbing', 1, 'day',"
            " '{1,2,3,4,5,6,7}', '08:00', '20:00', '{tech-plumbing-1}')")


async def test_a_manager_edits_a_roster_and_adds_a_swap_on_the_page(
    served: Served, page: Page,
) -> None:
    seed_roster(served.database_url)
    await sign_in(page, f"{served.url}/rosters", "manager", PASSWORD)
    form = page.locator("#roster-form")
    shifts = form.get_by_label("班次")
    await expect(shifts).to_have_value("day | 1,2,3,4,5,6,7 | 08:00 | 20:00 | tech-plumbing-1",
                                       timeout=UI_TIMEOUT_MS)
    await shifts.fill("day | 1-5 | 08:30 | 17:30 | tech-plumbing-1\n"
                      "night | all | 17:30 | 08:30 | technician")
    await form.get_by_label("后备人员").fill("technician")
    await form.get_by_role("button", name="保存值班表").click()
    await expect(page.locator("#roster-saved")).to_have_text("已保存", timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#roster-edited")).to_contain_text("manager 于")
    assert run_sql(served.database_url, "SELECT name, days, on_call FROM dispatch_shifts"
                   " WHERE roster = 'plumbing' ORDER BY seq") == [
        ("day", [1, 2, 3, 4, 5], ["tech-plumbing-1"]),
        ("night", [1, 2, 3, 4, 5, 6, 7], ["technician"])]

    swap = page.locator("#swap-form")
    await swap.get_by_label("原值班人").fill("tech-plumbing-1")
    await swap.get_by_label("替班人").fill("technician")
    await swap.get_by_label("开始").fill("2030-05-01T08:30")
    await swap.get_by_label("结束").fill("2030-05-01T17:30")
    await swap.get_by_label("原因").fill("调休 day off")
    await swap.get_by_role("button", name="添加换班").click()
    await expect(page.locator("#swaps tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#swaps tr")).to_contain_text("调休 day off")
    await expect(page.locator("#changes tr")).to_have_count(2)
    await expect(page.locator("#changes tr").first).to_contain_text("换班")
    await screenshot(page, "rosters.png")


PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5E"
    "rkJggg==")


async def test_a_technician_adds_a_photo_from_the_phone(served: Served, browser: Browser) -> None:
    _alarm, wo = await seed_entrapment(served.database_url)
    run_sql(served.database_url, "UPDATE work_orders SET state = 'on_site',"
            " assignee = 'technician' WHERE id = %s", (wo,))
    context = await new_phone(browser)
    try:
        phone = await context.new_page()
        violations = watch_csp(phone)
        await sign_in(phone, f"{served.url}/tech", "technician", PASSWORD)
        card = phone.locator(f'#mine article[data-work-order-id="{wo}"]')
        await expect(card.locator(".photo-section")).to_be_visible(timeout=UI_TIMEOUT_MS)
        await card.get_by_label("照片文件").set_input_files(
            files=[{"name": "before.png", "mimeType": "image/png", "buffer": PNG_1PX}])
        await card.get_by_label("阶段").select_option("before")
        await card.get_by_role("button", name="上传照片").click()
        photo = phone.locator(f'#mine article[data-work-order-id="{wo}"] figure.photo img')
        await expect(photo).to_have_count(1, timeout=UI_TIMEOUT_MS)
        await expect(photo).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
        await screenshot(phone, "tech_photo.png")
        assert violations == []
    finally:
        await context.close()
    assert run_sql(served.database_url, "SELECT stage, uploaded_by, size_bytes FROM"
                   " work_order_attachments") == [("before", "technician", len(PNG_1PX))]


async def test_a_printable_work_order_with_steps_who_and_when(
    served: Served, page: Page,
) -> None:
    _alarm, wo = await seed_entrapment(served.database_url)
    run_sql(served.database_url, "UPDATE work_order_steps SET done_at = now(),"
            " done_by = 'operator', note = '7楼 2人' WHERE work_order_id = %s AND seq = 1",
            (wo,))
    run_sql(served.database_url, "INSERT INTO device_assets (device, registration_code,"
            " contractor, contractor_phone) VALUES ('a-elevator-1', '3110', '维保A',"
            " '400-800-1234')")
    await sign_in(page, f"{served.url}/work-orders/{wo}/print", "manager", PASSWORD)
    await expect(page.locator("#wo-title")).to_contain_text(f"#{wo}", timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#wo-procedure")).to_contain_text("电梯困人处理流程")
    first = page.locator('#wo-steps tr[data-seq="1"]')
    await expect(first.locator("td.done-by")).to_have_text("operator")
    await expect(first).to_contain_text("7楼 2人")
    await expect(page.locator("table.sign-off")).to_contain_text("维修人签字")
    await expect(page.locator("#wo-facts")).to_contain_text("维保A 400-800-1234")
    await page.emulate_media(media="print")
    await expect(page.locator("header")).to_be_hidden()  # only the sheet is printed
    await expect(page.locator("#print")).to_be_hidden()
    pdf = await page.pdf(format="A4")  # what the browser's print produces
    assert pdf.startswith(b"%PDF-")
    await screenshot(page, "work_order_print.png")
