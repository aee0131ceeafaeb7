"""Debian's Chromium driven by Playwright, and a proxy the test can cut."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.browser.cutproxy import CuttableProxy
from tests.support.bridgeproc import BridgeProcess

CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def proxy(bridge: BridgeProcess) -> AsyncIterator[CuttableProxy]:
    """A cuttable proxy in front of ``bridge``."""
    started = CuttableProxy(bridge.port)
    await started.start()
    try:
        yield started
    finally:
        await started.close()
