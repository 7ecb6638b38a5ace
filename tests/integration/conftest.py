"""Fixtures shared by integration modules: ``inbox`` (every message under the test's site
prefix, on the session broker), and for the browser tests Debian's chromium (``browser``)
and a wall-screen page (``page``) that fails its test on any Content-Security-Policy
violation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from facility.mqtt import MqttClient
from tests.integration.browser_support import launch_chromium, wall_page
from tests.integration.gateway_support import Inbox


@pytest.fixture
async def inbox(mqtt_url: str, mqtt_protocol: str, site_id: str) -> AsyncIterator[Inbox]:
    client = MqttClient(mqtt_url, f"sub-{site_id}", protocol=mqtt_protocol)
    await client.start()
    await client.wait_connected(5)
    await client.subscribe(f"facility/v1/{site_id}/#")
    await client.wait_subscribed(5)
    box = Inbox(client, site_id)
    task = asyncio.create_task(box.collect())
    yield box
    task.cancel()
    await client.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    async with wall_page(browser) as wall:
        yield wall
