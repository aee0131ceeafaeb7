"""A page on another origin subscribes with ``withCredentials`` in real
Chromium: allowed origins get the stream (their cookie carries the token),
others are refused by the browser itself; a fetch with an Authorization
header passes its preflight only from an allowed origin."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.async_api import Browser, Page

from tests.browser.pageserver import PageServer
from tests.support.bridgeproc import BridgeProcess
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

SECRET = "browser-test-secret-of-at-least-32-bytes"
WAIT_MS = 15_000
# Opens an EventSource on the bridge (other origin) and notes what it sees.
SUBSCRIBER_PAGE = """<!doctype html>
<title>subscriber</title>
<script>
window.seen = { opened: false, data: [], errors: 0, state: null };
window.subscribe = (url, withCredentials) => {
  const source = new EventSource(url, { withCredentials });
  source.onopen = () => { window.seen.opened = true; };
  source.onmessage = (event) => { window.seen.data.push(event.data); };
  source.onerror = () => { window.seen.errors += 1; window.seen.state = source.readyState; };
};
</script>
"""
CLOSED = 2  # EventSource.CLOSED: the browser failed the connection and will not retry


@pytest.fixture
async def sites() -> AsyncIterator[tuple[PageServer, PageServer]]:
    """Two origins serving the same page: the bridge allows the first only."""
    allowed, other = PageServer(SUBSCRIBER_PAGE), PageServer(SUBSCRIBER_PAGE)
    await allowed.start()
    await other.start()
    try:
        yield allowed, other
    finally:
        await allowed.close()
        await other.close()


@pytest.fixture
async def cors_bridge(
    start_bridge: Callable[..., Any], topic: str, tmp_path: Path, sites: tuple[PageServer, PageServer]
) -> BridgeProcess:
    (tmp_path / "secret").write_text(SECRET)
    bridge: BridgeProcess = await start_bridge(jwt_secret_file=str(tmp_path / "secret"),
                                               cors_origins=sites[0].origin)  # fmt: skip
    await bridge.wait_for_topic(topic, 3)
    return bridge


async def page_on(browser: Browser, site: PageServer, bridge: BridgeProcess, token: str) -> Page:
    """A page of ``site`` in a fresh profile holding the bridge's token cookie."""
    context = await browser.new_context()
    await context.add_cookies([{"name": "access_token", "value": token, "url": bridge.url}])
    page = await context.new_page()
    await page.goto(f"{site.origin}/")
    return page


async def test_only_an_allowed_origin_subscribes_with_credentials(
    browser: Browser, cors_bridge: BridgeProcess, sites: tuple[PageServer, PageServer], cluster: Cluster, topic: str
) -> None:
    allowed, other = sites
    token = jwt.encode({"topics": [topic], "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    url = f"{cors_bridge.url}/sse/{topic}"
    welcome = await page_on(browser, allowed, cors_bridge, token)
    without_cookie = await page_on(browser, allowed, cors_bridge, token)
    stranger = await page_on(browser, other, cors_bridge, token)
    await welcome.evaluate("url => window.subscribe(url, true)", url)
    await without_cookie.evaluate("url => window.subscribe(url, false)", url)  # no credentials: no cookie
    await stranger.evaluate("url => window.subscribe(url, true)", url)

    await welcome.wait_for_function("window.seen.opened", timeout=WAIT_MS)
    await cluster.produce(topic, [b"for-the-allowed-origin"])
    await welcome.wait_for_function("window.seen.data.length === 1", timeout=WAIT_MS)
    assert await welcome.evaluate("window.seen") == {
        "opened": True, "data": ["for-the-allowed-origin"], "errors": 0, "state": None
    }  # fmt: skip
    for refused in (without_cookie, stranger):
        await refused.wait_for_function(f"window.seen.state === {CLOSED}", timeout=WAIT_MS)
        assert await refused.evaluate("window.seen.opened") is False
        assert await refused.evaluate("window.seen.data") == []


FETCH_TOPICS = """async ([url, token]) => {
  try {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    return response.status;
  } catch (error) {
    return error.name;
  }
}"""


async def test_the_preflight_of_a_fetch_with_a_token_header(
    browser: Browser, cors_bridge: BridgeProcess, sites: tuple[PageServer, PageServer]
) -> None:
    allowed, other = sites
    arguments = [f"{cors_bridge.url}/topics", "a-token"]
    assert await (await page_on(browser, allowed, cors_bridge, "")).evaluate(FETCH_TOPICS, arguments) == 200
    assert await (await page_on(browser, other, cors_bridge, "")).evaluate(FETCH_TOPICS, arguments) == "TypeError"

    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    async with httpx.AsyncClient(base_url=cors_bridge.url) as client:
        yes = await client.options("/topics", headers={"Origin": allowed.origin, **preflight})
        no = await client.options("/topics", headers={"Origin": other.origin, **preflight})
    assert yes.status_code == 200
    assert yes.headers["access-control-allow-origin"] == allowed.origin  # exact, never *
    assert yes.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in yes.headers["access-control-allow-headers"].lower()
    assert no.status_code == 400
    assert "access-control-allow-origin" not in no.headers
    for response in (yes, no):
        assert response.headers["x-content-type-options"] == "nosniff"
