"""The shift handover log in a real headless chromium (issue 23), against the real API and
PostgreSQL: with an entrapment open, the day shift's operator opens /handover, sees the open
alarm and order that will be handed over, writes the notes and hands over; the board shows the
handover awaiting acknowledgement. The night shift's operator, in another browser, acknowledges
it; both are kept (the open items as they were at the handover) and found by a search of the
log, and the board now shows the shift as acknowledged. The writer cannot acknowledge their
own handover (the page offers no button, the API refuses). Screenshots to test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import psycopg
from playwright.async_api import Browser, Page, expect

from facility.users import create_user
from tests.integration.api_support import PASSWORD, run_sql, seed_entrapment, seed_site
from tests.integration.browser_support import (
    UI_TIMEOUT_MS,
    screenshot,
    serving_api,
    sign_in,
    wall_page,
)

NOTES = "3号楼生活水泵异响 已通知维保明早检查"


async def test_the_day_shift_hands_over_and_the_night_shift_acknowledges(
    database_url: str, tmp_path: Path, page: Page, browser: Browser
) -> None:
    site = seed_site(database_url, tmp_path)
    with psycopg.connect(database_url) as conn:
        create_user(conn, "operator-night", PASSWORD, "operator", display_name="夜班 值班员")
    alarm_id, wo_id = await seed_entrapment(database_url)
    async with serving_api(database_url, site) as (url, _server):
        await sign_in(page, f"{url}/handover", "operator", PASSWORD)
        await expect(page.locator(f'#draft-alarms li[data-alarm-id="{alarm_id}"]')).to_be_visible(
            timeout=UI_TIMEOUT_MS)
        await expect(page.locator(f'#draft-orders li[data-order-id="{wo_id}"]')).to_be_visible()
        await expect(page.locator("#current-none")).to_be_visible()
        form = page.locator("#handover-form")
        await form.locator('input[name="shift"]').fill("白班 → 夜班")
        await form.locator('textarea[name="notes"]').fill(NOTES)
        await screenshot(page, "handover_write.png")
        await form.locator('button[type="submit"]').click()
        await expect(page.locator("body")).to_have_attribute("data-handover", "waiting",
                                                             timeout=UI_TIMEOUT_MS)
        await expect(page.locator("#current-notes")).to_have_text(NOTES)
        await expect(page.locator("#ack-form")).to_be_hidden()  # not one's own
        await page.goto(url + "/")
        await expect(page.locator("#handover-tile")).to_have_attribute(
            "data-state", "waiting", timeout=UI_TIMEOUT_MS)
        await screenshot(page, "handover_board_waiting.png")

        async with wall_page(browser) as night:
            await sign_in(night, f"{url}/handover", "operator-night", PASSWORD)
            ack = night.locator("#ack-form")
            await expect(ack).to_be_visible(timeout=UI_TIMEOUT_MS)
            await ack.locator('input[name="note"]').fill("收到 夜班继续跟进困人工单")
            await ack.locator('button[type="submit"]').click()
            await expect(night.locator("body")).to_have_attribute(
                "data-handover", "acknowledged", timeout=UI_TIMEOUT_MS)
            await expect(night.locator("#current-ack")).to_contain_text("operator-night")
            await night.locator("#log-search").fill("水泵")
            await expect(night.locator("#log tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
            await expect(night.locator("#log tr")).to_have_attribute("data-state", "acknowledged")
            await screenshot(night, "handover_acknowledged.png")
            await night.locator("#log-search").fill("没有这条记录")
            await expect(night.locator("#log tr")).to_have_count(0, timeout=UI_TIMEOUT_MS)

        await page.reload()
        await expect(page.locator("#handover-tile")).to_have_attribute(
            "data-state", "acknowledged", timeout=UI_TIMEOUT_MS)
        await expect(page.locator("#board-error")).to_have_text("")

    [(written_by, acked_by, notes, alarms, orders)] = run_sql(
        database_url, "SELECT written_by, acknowledged_by, notes, open_alarms, open_orders"
        " FROM shift_handovers")
    assert (written_by, acked_by, notes) == ("operator", "operator-night", NOTES)
    assert [a["id"] for a in alarms] == [alarm_id] and [o["id"] for o in orders] == [wo_id]
    assert run_sql(database_url, "SELECT action, actor FROM audit_log WHERE action LIKE"
                   " 'handover.%%' ORDER BY id") == [("handover.write", "operator"),
                                                      ("handover.acknowledge", "operator-night")]
