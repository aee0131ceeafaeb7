"""The demo page in a real browser: Chromium opens it, sees records produced
after it opened, and after the server closes its connection reconnects by
itself and receives the missed records exactly once.

The browser reaches the bridge through a proxy that the test cuts: the bridge
keeps running, so the records produced while the browser is away stay in its
ring, and the browser's own reconnect (``retry`` from the bridge, then
``Last-Event-ID``) is what brings them back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from bridge.wire import cursor as cursors
from tests.browser.cutproxy import CuttableProxy
from tests.support.bridgeproc import BridgeProcess
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 15_000  # the reconnect alone takes the bridge's retry of 2 s

# Counts what every EventSource the page creates goes through, without changing it.
WATCH_EVENT_SOURCES = """
window.__sse = { created: 0, opens: 0, errors: 0 };
window.EventSource = class extends window.EventSource {
  constructor(...args) {
    super(...args);
    window.__sse.created += 1;
    this.addEventListener("open", () => { window.__sse.opens += 1; });
    this.addEventListener("error", () => { window.__sse.errors += 1; });
  }
};
"""


def numbered(start: int, count: int) -> list[bytes]:
    return [orjson.dumps({"n": n}) for n in range(start, start + count)]


def cursor_after(sent: Sequence[tuple[int, int]], partitions: int = 3) -> list[int]:
    """The cursor after every record of a fresh topic: each partition's next offset."""
    position = [0] * partitions
    for partition, offset in sent:
        position[partition] = max(position[partition], offset + 1)
    return position


async def wait_for_position(bridge: BridgeProcess, topic: str, position: Sequence[int], timeout: float = 15.0) -> None:
    """Until the bridge has read ``topic`` up to ``position`` (so the records are in its ring)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        while time.monotonic() < deadline:
            served = {entry["topic"]: entry["position"] for entry in (await client.get("/topics")).json()["topics"]}
            if served.get(topic) == list(position):
                return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"the bridge did not reach {position} in {topic}")


async def test_page_reconnects_by_itself_and_gets_the_missed_records_once(
    page: Page, proxy: CuttableProxy, bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    page_errors: list[PlaywrightError] = []
    page.on("pageerror", lambda error: page_errors.append(error))
    await page.add_init_script(WATCH_EVENT_SOURCES)
    state, count, last_id = page.locator("#state"), page.locator("#count"), page.locator("#last-id")

    await page.goto(f"{proxy.url}/?topic={topic}")
    await expect(page.locator(f"#topics input[value='{topic}']")).to_be_checked()
    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    first_request = (await proxy.wait_for_requests("/sse/", 1))[0]
    assert first_request.target == f"/sse/{topic}?format=envelope"  # the page shows each record's metadata
    assert "last-event-id" not in first_request.headers

    # Records produced after the page opened arrive live.
    before = numbered(0, 30)
    sent_before = await cluster.produce(topic, before)
    await expect(count).to_have_text(str(len(before)), timeout=WAIT_MS)
    tag = await cluster.tag(topic)
    seen_id = cursors.encode(cursor_after(sent_before), tag)
    await expect(last_id).to_have_text(seen_id)

    # The connection is closed under the page; its reconnect is held at the
    # proxy until the records produced meanwhile are in the bridge's ring.
    proxy.hold()
    assert await proxy.cut() >= 1
    await expect(state).to_have_attribute("data-state", "connecting", timeout=WAIT_MS)
    missed = numbered(len(before), 40)
    sent_missed = await cluster.produce(topic, missed)
    await wait_for_position(bridge, topic, cursor_after([*sent_before, *sent_missed]))
    resume_request = (await proxy.wait_for_requests("/sse/", 2, timeout=WAIT_MS / 1000))[1]
    assert resume_request.target == first_request.target
    assert resume_request.headers.get("last-event-id") == seen_id
    await expect(count).to_have_text(str(len(before)))  # nothing got through while cut
    proxy.release()

    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    await expect(count).to_have_text(str(len(before) + len(missed)), timeout=WAIT_MS)

    # And the resumed stream goes on live.
    after = numbered(len(before) + len(missed), 30)
    sent_after = await cluster.produce(topic, after)
    values, sent = [*before, *missed, *after], [*sent_before, *sent_missed, *sent_after]
    await expect(count).to_have_text(str(len(values)), timeout=WAIT_MS)
    await expect(last_id).to_have_text(cursors.encode(cursor_after(sent), tag))

    shown = await page.locator("#records .data").all_text_contents()  # newest first
    arrived = shown[::-1]
    expected = [value.decode() for value in values]
    assert sorted(arrived) == sorted(expected)
    assert len(set(arrived)) == len(arrived) == len(values), "a record was shown twice"
    partition_of = dict(zip(expected, (partition for partition, _ in sent), strict=True))
    for partition in range(3):
        in_partition = [value for value in expected if partition_of[value] == partition]
        assert [value for value in arrived if partition_of[value] == partition] == in_partition, partition
    assert await page.locator("#records .type").count() == 0  # all plain "message" events
    assert await page.locator("#records .control").count() == 0  # no gap, no reset

    # One EventSource, opened twice: the reconnect was the browser's own.
    assert await page.evaluate("window.__sse") == {"created": 1, "opens": 2, "errors": 1}
    assert len(proxy.requests_for("/sse/")) == 2
    assert page_errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "demo-page.png", full_page=True)
