"""Issue 7's "done when", through the real stack in a real browser: `facility demo` runs as a
subprocess (simulators over Modbus TCP and BACnet/IP -> gateway -> MQTT -> ingest and rules
-> PostgreSQL -> API) with a scenario whose entrapment starts some seconds after the board is
open. Headless chromium (Debian's, driven by playwright):

* on the wall-screen board the operator signs in and sees the devices come online, then the
  entrapment alarm and its work order appear live without a reload, with the audible alert
  on; the operator acknowledges the alarm and the alert stops;
* on a phone-sized viewport the technician opens /tech, takes the unassigned entrapment work
  order (the written site has no dispatch file, so nobody is assigned), reports arrival,
  ticks the required steps (one with a note) and resolves it;
* the API then shows the order resolved with every required step done by the technician;
* neither page logs a Content-Security-Policy violation.

Every wait is on something the page or the API shows (playwright's expect), never a sleep.
Screenshots go to test-artifacts/demo_*.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.integration.browser_support import (
    ENTRAPMENT_TITLE,
    UI_TIMEOUT_MS,
    WALL_SCREEN,
    acknowledge_on_board,
    arrive_tick_and_resolve,
    launch_chromium,
    new_phone,
    screenshot,
    sign_in,
    watch_csp,
)
from tests.integration.demo_support import PASSWORD, eventually, run_demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Long enough after start-up for the board to be open and the devices online first; the
# fault lasts past the end of the test so the alarm stays active while it is acknowledged.
SCENARIO: list[dict[str, Any]] = [
    {"at": "20s", "device": "a-elevator-2", "fault": "entrapment", "duration": "5m"},
]
ONLINE_TIMEOUT_MS = 60_000
FAULT_TIMEOUT_MS = 90_000
NOTE = "7楼, 2人, 已安抚 two passengers, calm"


@pytest.fixture
def demo(tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str,
         site_id: str) -> Iterator[str]:
    with run_demo(tmp_path, database_url=database_url, mqtt_url=mqtt_url,
                  mqtt_protocol=mqtt_protocol, site_id=site_id, steps=SCENARIO) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            eventually(lambda: client.get("/api/v1/health").status_code == 200, 90,
                       "API health")
        yield url


async def _api(url: str, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=10)
    reply = await client.post("/auth/token", data={"username": username, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
    return client


async def test_entrapment_live_on_the_board_then_resolved_on_a_phone(demo: str) -> None:
    async with launch_chromium() as browser:
        wall = await browser.new_context(viewport=WALL_SCREEN, locale="zh-CN")
        board = await wall.new_page()
        board_violations = watch_csp(board)
        await sign_in(board, demo, "operator", PASSWORD)
        await expect(board.locator("#board")).to_be_visible()
        await expect(board.locator("body")).to_have_attribute("data-live", "yes")
        await expect(board.locator('#buildings [data-device="a-elevator-2"]')).to_have_attribute(
            "data-state", "online", timeout=ONLINE_TIMEOUT_MS)
        alarm = board.locator("#alarms tr", has_text="a-elevator-2")
        # The fault has not started yet: what follows arrives while the page stays open.
        assert await alarm.count() == 0, "the entrapment was raised before the board was open"
        await board.evaluate("window.__sameDocument = true")

        await expect(alarm).to_have_count(1, timeout=FAULT_TIMEOUT_MS)
        await expect(alarm.locator(".prio-critical")).to_have_text("紧急")
        await expect(alarm).to_have_attribute("data-state", "unack")
        await expect(board.locator("body")).to_have_attribute("data-alerting", "yes")
        await expect(board.locator('#buildings [data-device="a-elevator-2"]')).to_have_attribute(
            "data-state", "alarm")
        order = board.locator("#work-orders tr", has_text=ENTRAPMENT_TITLE)
        await expect(order).to_have_count(1, timeout=UI_TIMEOUT_MS)
        await expect(order).to_have_attribute("data-state", "open")
        wo_id = int(await order.get_attribute("data-work-order-id") or "0")
        await screenshot(board, "demo_board_entrapment.png")

        await acknowledge_on_board(board, alarm)
        assert await board.evaluate("window.__sameDocument") is True, "the board reloaded"
        await screenshot(board, "demo_board_acknowledged.png")

        mobile = await new_phone(browser)
        phone = await mobile.new_page()
        phone_violations = watch_csp(phone)
        await sign_in(phone, f"{demo}/tech", "technician", PASSWORD)
        offered = phone.locator(f'#pool article[data-work-order-id="{wo_id}"]')
        await expect(offered).to_contain_text(ENTRAPMENT_TITLE, timeout=UI_TIMEOUT_MS)
        await offered.get_by_role("button", name="接单").click()
        card = phone.locator(f'#mine article[data-work-order-id="{wo_id}"]')
        operator = await _api(demo, "operator")
        try:
            steps = (await operator.get(f"/work-orders/{wo_id}")).json()["steps"]
            required = [s["seq"] for s in steps if s["required"]]
            await arrive_tick_and_resolve(phone, card, required, NOTE,
                                          "demo_technician_steps.png")
            await screenshot(phone, "demo_technician_resolved.png")

            done = (await operator.get(f"/work-orders/{wo_id}")).json()
        finally:
            await operator.aclose()
        await wall.close()
        await mobile.close()

    assert board_violations == [] and phone_violations == []
    assert done["state"] == "resolved" and done["assignee"] == "technician", done
    assert done["procedure_id"] == "elevator_entrapment" and done["source"] == "a-elevator-2"
    by_seq = {s["seq"]: s for s in done["steps"]}
    assert all(by_seq[seq]["done_by"] == "technician" for seq in required), done["steps"]
    assert by_seq[required[0]]["note"] == NOTE
    events = [e["event"] for e in done["events"]]
    assert {"created", "accepted", "arrived", "resolved"} <= set(events), events
    assert events.index("accepted") < events.index("arrived") < events.index("resolved")
