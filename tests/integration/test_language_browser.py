"""One language at a time, chosen per user and remembered (issue 23), in a real headless
chromium against the real API and PostgreSQL. The admin signs in: every page (board, handover,
technician, desk, reports, ledger, rosters, notices, users, device, printable order) speaks
zh-CN, the default: no English text of the message catalogue is left on it and no raw state
code. The admin switches to English: the same pages then hold no Chinese character at all,
apart from data that has no English (the demo staff's names); procedure titles, steps, point
names and alarm messages show their English. A new browser that signs in as the admin is
brought to English by the remembered choice, and an API error reads in English there."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from playwright.async_api import Browser, Page, expect

from facility.users import DEMO_STAFF
from tests.integration.api_support import PASSWORD, ROOT, run_sql, seed_site
from tests.integration.browser_support import (
    UI_TIMEOUT_MS,
    screenshot,
    serving_api,
    sign_in,
    wall_page,
)

CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+")
NO_ENGLISH = {name for _u, _r, name, _t in DEMO_STAFF}  # data: the staff's names
CODES = re.compile(r"\b(on_site|rtn_unack|unack|in_service)\b")
# (path, what shows once the page's data is in)
PAGES = [("/", "body[data-board-ready='yes']"), ("/handover", "#draft-alarms li"),
         ("/tech", "#pool article"), ("/desk", "#requests tr"), ("/reports", "#kpis"),
         ("/assets", "#due li"), ("/rosters", "#roster-edited"), ("/notices", "#board"),
         ("/users", "#users tr"),
         ("/devices/a-elevator-1", "#device-orders tr[data-work-order-id]"),
         ("/work-orders/{wo}/print", "#wo-steps tr")]
PAGE_TEXT = """() => {
  const copy = document.body.cloneNode(true);
  // each language's own name (中文, English), by convention
  copy.querySelectorAll('#language, select[name=language]').forEach((n) => n.remove());
  return [document.title, copy.textContent,
          ...[...document.querySelectorAll('[placeholder],[aria-label],[title]')].map(
            (n) => [n.placeholder, n.getAttribute('aria-label'), n.title].join(' '))].join('\\n');
}"""


async def _seed(database_url: str) -> int:
    """An entrapment raised as the rules service raises it (with its English message) and
    its order; a repair request; an inspection falling due."""
    from facility import events
    from facility.procedures import load_procedures, upsert_procedures
    from rules.alarms import raise_alarm
    from rules.engine_types import RaiseAlarm
    from rules.work_orders import open_for_alarm

    procedures = load_procedures(ROOT / "procedures")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await upsert_procedures(conn, procedures)
        cur = await conn.execute("SELECT id FROM devices WHERE name = 'a-elevator-1'")
        row = await cur.fetchone()
        assert row is not None
        act = RaiseAlarm(
            source="a-elevator-1", device="a-elevator-1", gateway=None, rule_id="entrapment",
            alarm_type="entrapment", priority="critical", procedure="elevator_entrapment",
            message="电梯困人", detail={"message_en": "Passengers trapped in the elevator"},
            at=datetime.now(UTC))
        async with conn.transaction():
            alarm, raised = await raise_alarm(conn, "tsite", row[0], act)
            created = await open_for_alarm(
                conn, site_id="tsite", device_id=row[0], source="a-elevator-1",
                fault="entrapment", alarm_id=alarm.id,
                procedure=procedures["elevator_entrapment"], description="", now=act.at)
            await events.record(conn, "tsite", [*raised, *created])
    run_sql(database_url, "INSERT INTO device_assets (device, contractor, inspection_due)"
            " VALUES ('a-elevator-1', 'KONE service', current_date + 10)")
    run_sql(database_url, "INSERT INTO latest_values (point_id, time, quality, flags)"
            " SELECT p.id, now(), 1, 'fault,open-loop' FROM points p JOIN devices d"
            " ON d.id = p.device_id WHERE d.name = 'a-elevator-1' AND p.name = 'door_zone'")
    run_sql(database_url, "INSERT INTO work_orders (site_id, source, fault, origin, title,"
            " trade, priority, state, created_at, updated_at) VALUES ('tsite', 'desk', 'leak',"
            " 'request', 'Leak at 3-1201', 'plumbing', 'medium', 'open', now(), now())")
    wo = created[0].work_order_id
    assert wo is not None
    return wo


async def _texts(page: Page, url: str, wo: int) -> dict[str, str]:
    """Each page's visible words once its data is in."""
    found = {}
    for path, ready in PAGES:
        await page.goto(url + path.format(wo=wo))
        await expect(page.locator(ready).first).to_be_attached(timeout=UI_TIMEOUT_MS)
        await expect(page.locator("#board-error")).to_have_text("")
        found[path] = await page.evaluate(PAGE_TEXT)
    return found


async def test_the_pages_speak_one_language_chosen_and_remembered_per_user(
    database_url: str, tmp_path: Path, page: Page, browser: Browser
) -> None:
    site = seed_site(database_url, tmp_path)
    wo = await _seed(database_url)
    async with serving_api(database_url, site) as (url, _server):
        english = set(await (await page.request.get(f"{url}/i18n/en.json")).json())
        chinese = await (await page.request.get(f"{url}/i18n/zh-CN.json")).json()
        ui_english = sorted(m for m in english | set(chinese) if " " in m and "%" not in m
                            and ":" not in m and chinese.get(m, m) != m and len(m) > 6)
        await sign_in(page, url, "admin", PASSWORD)
        await expect(page.locator("#board")).to_be_visible(timeout=UI_TIMEOUT_MS)
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        texts = await _texts(page, url, wo)
        await _flags_read(page, url, "故障, 回路开路")
        await page.goto(url + "/")
        await expect(page.locator("#alarms tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
        await screenshot(page, "language_zh.png")
        left = {p: [m for m in ui_english if m in t] + CODES.findall(t) for p, t in texts.items()}
        assert {p: m for p, m in left.items() if m} == {}
        assert all(CJK.search(t) for t in texts.values())
        await page.goto(url + "/users")  # an API error, in the page's language
        row = page.locator('#users tr[data-username="admin"]')
        await row.locator('select[name="role"]').select_option("operator")
        await row.get_by_role("button", name="保存").click()
        await expect(page.locator("#board-error")).to_have_text("管理员不能停用或降级自己",
                                                                timeout=UI_TIMEOUT_MS)

        await page.locator("#language").select_option("en")
        await expect(page.locator("html")).to_have_attribute("lang", "en", timeout=UI_TIMEOUT_MS)
        await expect(page.locator("#who")).to_have_text("admin (admin)", timeout=UI_TIMEOUT_MS)
        assert run_sql(database_url, "SELECT language FROM users WHERE username = 'admin'") == [
            ("en",)]
        texts = await _texts(page, url, wo)
        await _flags_read(page, url, "fault, open loop")
        await page.goto(url + "/")
        await expect(page.locator("#alarms")).to_contain_text("Passengers trapped",
                                                              timeout=UI_TIMEOUT_MS)
        await screenshot(page, "language_en.png")
        left = {p: [c for c in CJK.findall(_without(t, NO_ENGLISH))] + CODES.findall(t)
                for p, t in texts.items()}
        assert {p: c for p, c in left.items() if c} == {}
        assert "Elevator entrapment" in texts["/tech"] or "entrapment" in texts["/tech"].lower()

        async with wall_page(browser) as other:  # another browser: no cookie yet, zh-CN
            await sign_in(other, url, "admin", PASSWORD)
            await expect(other.locator("html")).to_have_attribute("lang", "en",
                                                                  timeout=UI_TIMEOUT_MS)
            await expect(other.locator("#board")).to_be_visible(timeout=UI_TIMEOUT_MS)
            await other.goto(url + "/users")
            row = other.locator('#users tr[data-username="admin"]')
            await row.locator('select[name="role"]').select_option("operator")
            await row.get_by_role("button", name="Save").click()
            await expect(other.locator("#board-error")).to_have_text(
                "an admin cannot deactivate or demote themself", timeout=UI_TIMEOUT_MS)


async def _flags_read(page: Page, url: str, words: str) -> None:
    """The device page shows what the device said of a bad point, in the page's language,
    and the device's own words on hover."""
    await page.goto(url + "/devices/a-elevator-1")
    cell = page.locator('#values tr[data-point="door_zone"] td[class^="quality-"]')
    await expect(cell.locator(".flags")).to_have_text(words, timeout=UI_TIMEOUT_MS)
    await expect(cell).to_have_attribute("title", "fault,open-loop")


def _without(text: str, data: set[str]) -> str:
    for value in data:
        text = text.replace(value, "")
    return text
