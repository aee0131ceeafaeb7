"""The worked example of docs/security.md in Chromium: the demo page opened with a token
in its address streams the topic the token grants, keeps the token in a
cookie rather than the address, and shows ``reauth`` when the token expires."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.async_api import Page, expect

from tests.support.bridgeproc import BridgeProcess
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

SECRET = "demo-page-secret-of-at-least-32-bytes!"
WAIT_MS = 15_000


async def test_the_demo_page_with_a_token_streams_until_it_expires(
    page: Page, start_bridge: Callable[..., Any], cluster: Cluster, topic: str, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text(SECRET)
    bridge: BridgeProcess = await start_bridge(jwt_secret_file=str(tmp_path / "secret"), jwt_leeway="0")
    await bridge.wait_for_topic(topic, 3)
    token = jwt.encode({"topics": [topic], "exp": int(time.time()) + 5}, SECRET, algorithm="HS256")

    await page.goto(f"{bridge.url}/?topic={topic}&access_token={token}")
    await expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    assert "access_token" not in page.url
    await cluster.produce(topic, [b'{"n": 1}'])
    await expect(page.locator("#count")).to_have_text("1", timeout=WAIT_MS)

    # At expiry: the reauth notice, then the browser's reconnect with the old cookie is refused.
    notice = page.locator("#records .control")
    await expect(notice.locator(".type")).to_have_text("reauth", timeout=WAIT_MS)
    await expect(notice.locator(".data")).to_have_text('{"reason":"token_expired"}')
    await expect(page.locator("#state")).to_have_attribute("data-state", "closed", timeout=WAIT_MS)
    assert token not in bridge.log()
