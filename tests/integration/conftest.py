"""Fixtures of the browser tests: Debian's chromium (``browser``) and a wall-screen page
(``page``) that fails its test on any Content-Security-Policy violation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from tests.integration.browser_support import launch_chromium, wall_page


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    async with wall_page(browser) as wall:
        yield wall
