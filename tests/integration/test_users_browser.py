"""The admin's staff accounts page (issue 23) in a real headless chromium: the admin gives the
technician the scope of one building; the change is saved, in the audit log, and signs the
technician out at once (their open technician's page drops to the sign-in form); signed in
again, the technician's page shows the orders of that building only. A new account with a scope
is created from the same page."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.integration.api_support import PASSWORD, run_sql, seed_entrapment, seed_site
from tests.integration.browser_support import (
    UI_TIMEOUT_MS,
    new_phone,
    screenshot,
    serving_api,
    sign_in,
)


async def test_the_admin_gives_a_technician_one_building(
    database_url: str, tmp_path: Path, page: Page, browser: Browser
) -> None:
    site = seed_site(database_url, tmp_path)
    _a, in_a = await seed_entrapment(database_url, "a-elevator-1")
    _b, in_b = await seed_entrapment(database_url, "b-elevator-1")
    async with serving_api(database_url, site) as (url, _server):
        context = await new_phone(browser)
        try:
            phone = await context.new_page()
            await sign_in(phone, f"{url}/tech", "technician", PASSWORD)
            for order in (in_a, in_b):
                await expect(phone.locator(f'#pool article[data-work-order-id="{order}"]')
                             ).to_be_visible(timeout=UI_TIMEOUT_MS)

            await sign_in(page, f"{url}/users", "admin", PASSWORD)
            row = page.locator('#users tr[data-username="technician"]')
            await row.locator('input[name="scope"]').fill("tsite/b")
            await row.get_by_role("button", name="保存").click()
            await expect(row.locator(".ok")).to_have_text("已保存", timeout=UI_TIMEOUT_MS)
            form = page.locator("#user-form")
            await form.locator('input[name="username"]').fill("tech-a")
            await form.locator('input[name="password"]').fill("long enough pw")
            await form.locator('select[name="role"]').select_option("technician")
            await form.locator('input[name="scope"]').fill("tsite/a")
            await form.locator('button[type="submit"]').click()
            await expect(page.locator('#users tr[data-username="tech-a"] input[name="scope"]')
                         ).to_have_value("tsite/a", timeout=UI_TIMEOUT_MS)
            await screenshot(page, "users.png")

            await phone.reload()  # its token was revoked: the next request signs it out
            await expect(phone.locator("#login")).to_be_visible(timeout=UI_TIMEOUT_MS)
            await sign_in(phone, f"{url}/tech", "technician", PASSWORD)
            await expect(phone.locator(f'#pool article[data-work-order-id="{in_b}"]')
                         ).to_be_visible(timeout=UI_TIMEOUT_MS)
            await expect(phone.locator(f'#pool article[data-work-order-id="{in_a}"]')
                         ).to_have_count(0)
        finally:
            await context.close()
    assert run_sql(database_url, "SELECT s.site_id, s.building FROM user_scopes s JOIN users u"
                   " ON u.id = s.user_id ORDER BY u.username") == [("tsite", "a"), ("tsite", "b")]
    assert run_sql(database_url, "SELECT action, target, detail FROM audit_log WHERE action IN"
                   " ('user.scope', 'user.create') ORDER BY id") == [
        ("user.scope", "technician", {"from": None, "to": ["tsite/b"]}),
        ("user.create", "tech-a", {"role": "technician", "trade": None, "scope": ["tsite/a"]})]
