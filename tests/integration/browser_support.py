"""Shared by the browser tests: Debian's chromium (never a downloaded browser) launched by
playwright's async API with the flags a container needs, the wall-screen and phone
viewports, signing in on a page's login form, the operator's acknowledgement on the board
and the technician's arrive - tick steps - resolve on a phone, screenshots saved to
test-artifacts/, a watch on the console for Content-Security-Policy violations (the pages
must run under the API's strict policy: no inline script, no style attribute), a wait for a
condition in the page that the policy does not refuse (``wait_in_page``), the API served
on a free loopback port for the length of a block, and a wall-screen page that fails its
test on any CSP violation (tests/integration/conftest.py makes it the ``page`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
WALL_SCREEN: ViewportSize = {"width": 1920, "height": 1080}
PHONE: ViewportSize = {"width": 390, "height": 844}
ARTIFACTS = ROOT / "test-artifacts"
ENTRAPMENT_TITLE = "电梯困人处理流程"
ACKNOWLEDGE = re.compile("^(Acknowledge|确认)$")  # the pages speak one language: zh-CN or en
UI_TIMEOUT_MS = 8_000


@asynccontextmanager
async def serving_api(database_url: str, site: Any, timeout_s: float = 10.0
                      ) -> AsyncIterator[tuple[str, asyncio.Task[None]]]:
    """The API on a free loopback port until the block ends: its base URL and its task (a
    test may cancel it to see the pages lose the server)."""
    from api.service import serve_api
    from facility.ports import free_port

    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(
        serve_api(database_url, "127.0.0.1", port, site=site, ready=ready), name="api[test]")
    try:
        async with asyncio.timeout(timeout_s):
            await ready.wait()
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def sign_in(page: Page, url: str, username: str, password: str) -> None:
    await page.goto(url)
    form = page.locator("#login")
    await expect(form).to_be_visible()
    await form.locator('input[name="username"]').fill(username)  # in either language
    await form.locator('input[name="password"]').fill(password)
    await form.locator('button[type="submit"]').click()


async def new_phone(browser: Browser) -> BrowserContext:
    return await browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True,
                                     has_touch=True, device_scale_factor=2)


async def acknowledge_on_board(board: Page, alarm: Locator) -> None:
    """Acknowledge the alarm's row on the wall-screen board: it turns ``ack``, the audible
    alert stops and no error shows."""
    await alarm.get_by_role("button", name=ACKNOWLEDGE).click()
    await expect(alarm).to_have_attribute("data-state", "ack", timeout=UI_TIMEOUT_MS)
    await expect(alarm.get_by_role("button", name=ACKNOWLEDGE)).to_have_count(0)
    await expect(board.locator("body")).to_have_attribute("data-alerting", "no")
    await expect(board.locator("#board-error")).to_have_text("")


async def arrive_tick_and_resolve(phone: Page, card: Locator, required: Sequence[int],
                                  note: str, shot: str) -> None:
    """On the technician page, an accepted order's card: report arrival, tick the required
    steps (the first with ``note``; Resolve stays disabled until all are ticked), screenshot
    ``shot``, resolve; the card leaves the open orders and no error shows."""
    await expect(card).to_have_attribute("data-state", "accepted", timeout=UI_TIMEOUT_MS)
    await card.get_by_role("button", name=re.compile("Arrived|到场")).click()
    await expect(card).to_have_attribute("data-state", "on_site", timeout=UI_TIMEOUT_MS)
    resolve = card.get_by_role("button", name=re.compile("^(Resolve|完成)$"))
    await expect(resolve).to_be_disabled()
    assert required, "the procedure has no required step"
    for seq in required:
        step = card.locator(f'li[data-seq="{seq}"]')
        if seq == required[0]:
            await step.locator("input.note").fill(note)
        await step.get_by_role("checkbox").check()
        await expect(step).to_have_class(re.compile("done"), timeout=UI_TIMEOUT_MS)
    await expect(resolve).to_be_enabled()
    await screenshot(phone, shot)
    await resolve.click()
    await expect(card).to_have_count(0, timeout=UI_TIMEOUT_MS)  # no longer open
    await expect(phone.locator("#board-error")).to_have_text("")


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # The unacknowledged critical badge blinks: stop it so every shot shows it.
    await page.screenshot(path=ARTIFACTS / name, animations="disabled", full_page=True)


async def wait_in_page(page: Page, expression: str, timeout_ms: int = UI_TIMEOUT_MS) -> None:
    """Waits until a JavaScript expression is truthy in the page, asking from here every 50 ms.

    Not ``page.wait_for_function``: after a first false answer it asks again from the page's
    own timers through ``globalThis.eval``, which the pages' policy (no 'unsafe-eval') refuses
    with an EvalError, so it passed only when the condition already held at the first look.
    ``page.evaluate`` goes through the DevTools protocol, which the policy does not govern."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    while not await page.evaluate(expression):
        if loop.time() >= deadline:
            raise AssertionError(f"still false after {timeout_ms} ms in {page.url}: {expression}")
        await asyncio.sleep(0.05)


def watch_csp(page: Page) -> list[str]:
    """Collects the page's Content-Security-Policy violations (chromium reports each on the
    console: "Refused to ... because it violates the following Content Security Policy
    directive ..."); a test asserts the list stays empty."""
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    return violations


@asynccontextmanager
async def wall_page(browser: Browser) -> AsyncIterator[Page]:
    """A wall-screen page (zh-CN) that fails the test on any CSP violation."""
    context = await browser.new_context(viewport=WALL_SCREEN, locale="zh-CN")
    try:
        page = await context.new_page()
        violations = watch_csp(page)
        yield page
        assert violations == []
    finally:
        await context.close()
