"""Shared by the browser tests: Debian's chromium (never a downloaded browser) launched by
playwright's async API with the flags a container needs, the wall-screen and phone
viewports, signing in on a page's login form, and screenshots saved to test-artifacts/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

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

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium);"
    " .ci/run does so in CI",
)


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
    await form.get_by_label("Username").fill(username)
    await form.get_by_label("Password").fill(password)
    await form.get_by_role("button", name="Sign in").click()


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # The unacknowledged critical badge blinks: stop it so every shot shows it.
    await page.screenshot(path=ARTIFACTS / name, animations="disabled", full_page=True)
