"""Debian's Chromium driven by Playwright, and a proxy the test can cut."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from tests.browser.cutproxy import CuttableProxy
from tests.support.bridgeproc import BridgeProcess


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
