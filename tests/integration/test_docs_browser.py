"""/docs without internet (issue 23): in a real headless chromium whose every request off the
API's own origin is refused, Swagger UI loads from the server (the fastapi-offline package's
files) and lists the API's operations, under the page's Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, Route, expect

from tests.integration.api_support import seed_site
from tests.integration.browser_support import UI_TIMEOUT_MS, screenshot, serving_api


async def test_swagger_ui_loads_from_the_server_alone(
    page: Page, database_url: str, tmp_path: Path
) -> None:
    site = seed_site(database_url, tmp_path)
    async with serving_api(database_url, site) as (url, _server):
        elsewhere: list[str] = []

        async def only_ours(route: Route) -> None:
            if route.request.url.startswith(url):
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort()

        await page.context.route("**/*", only_ours)
        await page.goto(url + "/docs")
        operations = page.locator(".opblock")
        await expect(operations.first).to_be_visible(timeout=UI_TIMEOUT_MS)
        assert await operations.count() > 50
        await expect(page.locator(".opblock-summary-path").filter(
            has_text="/api/v1/handovers").first).to_be_visible()
        await screenshot(page, "docs.png")
        assert elsewhere == []
