"""The technician's page without network (issue 23), in a real headless chromium on a phone
viewport against the real API and PostgreSQL. Online, the technician opens /tech: the service
worker installs and keeps the page and the open orders. The network is then cut by the
browser's own offline emulation (playwright's ``context.set_offline``): the technician ticks
two steps with notes and takes a photo, and ticks a step of a second order; nothing reaches the
server, the page shows them done and waiting, and a reload without network still opens the
page with them (from the service worker and the IndexedDB outbox). Meanwhile the second order
is reassigned to someone else. The network returns: the queue is sent in order, each request
once (idempotency keys), the steps and the photo are in the database exactly once, and the
step of the reassigned order is shown as not applied, with the server's reason."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from playwright.async_api import Browser, FilePayload, Page, expect

from tests.integration.api_support import PASSWORD, run_sql, seed_entrapment, seed_site
from tests.integration.browser_support import (
    UI_TIMEOUT_MS,
    new_phone,
    screenshot,
    serving_api,
    sign_in,
    wait_in_page,
    watch_csp,
)

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5E"
    "rkJggg==")
SEND_TIMEOUT_MS = 20_000


async def _tick(phone: Page, order: int, seq: int, note: str) -> None:
    step = phone.locator(f'#mine article[data-work-order-id="{order}"] li[data-seq="{seq}"]')
    await step.locator("input.note").fill(note)
    await step.get_by_role("checkbox").check()
    await expect(step).to_have_class(re.compile(r"\bdone\b.*\bpending\b"), timeout=UI_TIMEOUT_MS)


async def test_work_done_offline_lands_once_when_the_network_returns(
    database_url: str, tmp_path: Path, browser: Browser
) -> None:
    site = seed_site(database_url, tmp_path)
    _a1, first = await seed_entrapment(database_url, "a-elevator-1")
    _a2, second = await seed_entrapment(database_url, "b-elevator-1")
    run_sql(database_url, "UPDATE work_orders SET state = 'on_site', assignee = 'technician'"
            " WHERE id = %s", (first,))
    run_sql(database_url, "UPDATE work_orders SET state = 'accepted', assignee = 'technician'"
            " WHERE id = %s", (second,))
    async with serving_api(database_url, site) as (url, _server):
        context = await new_phone(browser)
        try:
            phone = await context.new_page()
            violations = watch_csp(phone)
            await sign_in(phone, f"{url}/tech", "technician", PASSWORD)
            card = phone.locator(f'#mine article[data-work-order-id="{first}"]')
            await expect(card.locator("li[data-seq]").first).to_be_visible(timeout=UI_TIMEOUT_MS)
            await wait_in_page(phone, "navigator.serviceWorker.controller !== null")
            await phone.reload()  # now through the service worker, which keeps the answers
            # installable: no manifest or service-worker error (a test context is incognito)
            cdp = await context.new_cdp_session(phone)
            errors = (await cdp.send("Page.getInstallabilityErrors"))["installabilityErrors"]
            assert [e["errorId"] for e in errors if e["errorId"] != "in-incognito"] == []
            other = phone.locator(f'#mine article[data-work-order-id="{second}"]')
            await other.get_by_role("button", name="步骤").click()
            await expect(other.locator('li[data-seq="1"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
            required = [r[0] for r in run_sql(
                database_url, "SELECT seq FROM work_order_steps WHERE work_order_id = %s"
                " AND required ORDER BY seq LIMIT 2", (first,))]

            await context.set_offline(True)
            await expect(phone.locator("#offline-note")).to_be_visible(timeout=UI_TIMEOUT_MS)
            for seq in required:
                await _tick(phone, first, seq, f"离线备注 {seq}")
            photo: FilePayload = {"name": "before.png", "mimeType": "image/png", "buffer": PNG_1PX}
            await card.get_by_label("照片文件").set_input_files(files=[photo])
            await card.get_by_label("阶段").select_option("before")
            await card.get_by_role("button", name="上传照片").click()
            await _tick(phone, second, 1, "离线 第二单")
            count = phone.locator("#outbox-count")
            await expect(count).to_have_attribute("data-pending", "4", timeout=UI_TIMEOUT_MS)
            assert run_sql(database_url, "SELECT count(*) FROM work_order_steps"
                           " WHERE done_at IS NOT NULL") == [(0,)]
            assert run_sql(database_url, "SELECT count(*) FROM work_order_attachments") == [(0,)]

            await phone.reload()  # no network: the page comes from the service worker
            await expect(count).to_have_attribute("data-pending", "4", timeout=UI_TIMEOUT_MS)
            for seq in required:
                await expect(card.locator(f'li[data-seq="{seq}"]')).to_have_class(
                    re.compile(r"\bpending\b"), timeout=UI_TIMEOUT_MS)
            await screenshot(phone, "tech_offline.png")

            run_sql(database_url, "UPDATE work_orders SET assignee = 'tech-elevator-1'"
                    " WHERE id = %s", (second,))  # reassigned while the phone was away
            await context.set_offline(False)
            await expect(count).to_have_attribute("data-pending", "0", timeout=SEND_TIMEOUT_MS)
            conflict = phone.locator(f'#conflicts li[data-order="{second}"]')
            await expect(conflict).to_contain_text("tech-elevator-1")
            await expect(phone.locator("#conflicts li")).to_have_count(1)
            await expect(card.locator("figure.photo img")).to_have_count(1, timeout=UI_TIMEOUT_MS)
            await screenshot(phone, "tech_back_online.png")
            assert violations == []
        finally:
            await context.close()

    done = run_sql(database_url, "SELECT work_order_id, seq, note, done_by FROM work_order_steps"
                   " WHERE done_at IS NOT NULL ORDER BY 1, 2")
    assert done == [(first, seq, f"离线备注 {seq}", "technician") for seq in required]
    assert run_sql(database_url, "SELECT stage, uploaded_by FROM work_order_attachments") == [
        ("before", "technician")]
    assert run_sql(database_url, "SELECT count(*) FROM idempotent_requests") == [(4,)]
