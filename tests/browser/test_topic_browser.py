"""The topic browser in Chromium: several topics, filters and the envelope
view narrow what is shown, pause holds records without losing any; and a
filtered EventSource takes the id of an id-only frame (no event fired) and
resumes from it."""

from __future__ import annotations

import orjson
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from tests.browser.cutproxy import CuttableProxy
from tests.browser.test_demo_page import ARTIFACTS, WAIT_MS
from tests.support.bridgeproc import BridgeProcess
from tests.support.cluster import Cluster, unique_topic

pytestmark = [pytest.mark.browser, pytest.mark.kafka]


def typed(kind: str, count: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"type": kind, "n": n}) for n in range(start, start + count)]


async def choose_topics(page: Page, topics: list[str]) -> None:
    """Check exactly these topics in the page's topic list."""
    for box in await page.locator("#topics input[name=topic]").all():
        await box.set_checked(await box.get_attribute("value") in topics)


async def test_filters_narrow_what_is_shown_and_pause_loses_nothing(
    page: Page, bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    page_errors: list[PlaywrightError] = []
    page.on("pageerror", lambda error: page_errors.append(error))
    second = await cluster.create_topic(unique_topic("b"), partitions=1)
    await bridge.wait_for_topic(second, 1)
    await page.goto(f"{bridge.url}/")
    records, count = page.locator("#records li"), page.locator("#count")

    # A bad filter is explained, not silently retried.
    await choose_topics(page, [topic])
    await page.fill("#where", "type")
    await page.click("#apply")
    await expect(page.locator("#error")).to_contain_text("PATH==VALUE", timeout=WAIT_MS)

    await choose_topics(page, [topic, second])
    await page.fill("#where", "type==alert")
    await page.check("input[name=format][value=envelope]")
    await page.click("#apply")
    await expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    assert "where=type%3D%3Dalert" in page.url
    assert await page.locator("#error").text_content() == ""

    await cluster.produce(topic, [*typed("info", 5), *typed("alert", 4, start=5), *typed("debug", 3, start=9)])
    await cluster.produce(second, [*typed("alert", 2, start=100), *typed("info", 4, start=100)], partitions=1)
    await expect(count).to_have_text("6", timeout=WAIT_MS)
    await expect(records).to_have_count(6)
    shown = [orjson.loads(text) for text in await page.locator("#records .data").all_text_contents()]
    assert {value["type"] for value in shown} == {"alert"}
    assert sorted(await page.locator("#records .topic").all_text_contents()) == sorted([topic] * 4 + [second] * 2)
    assert sorted(value["n"] for value in shown) == [5, 6, 7, 8, 100, 101]
    await expect(page.locator("#rate")).not_to_have_text("0.0")

    # Paused: records keep arriving and are held, the view stays as it was.
    await page.click("#pause")
    await cluster.produce(second, typed("alert", 3, start=200), partitions=1)
    await expect(page.locator("#pending")).to_have_text("3", timeout=WAIT_MS)
    await expect(count).to_have_text("9")
    await expect(records).to_have_count(6)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "topic-browser.png", full_page=True)
    await page.click("#pause")
    await expect(records).to_have_count(9)
    await expect(page.locator("#pending")).to_have_text("")
    newest = orjson.loads((await page.locator("#records .data").all_text_contents())[0])
    assert newest == {"type": "alert", "n": 202}
    assert page_errors == []


async def test_chromium_takes_the_id_of_an_id_only_frame_and_resumes_from_it(
    page: Page, proxy: CuttableProxy, bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    await page.goto(f"{proxy.url}/?topic={topic}&where=type%3D%3Dalert")
    state, count = page.locator("#state"), page.locator("#count")
    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    first = (await proxy.wait_for_requests("/sse/", 1))[0]
    assert first.target == f"/sse/{topic}?where=type%3D%3Dalert&format=envelope"

    # 60 records, none an alert: no event, but the heartbeat carries the id past them.
    await cluster.produce(topic, typed("info", 60))
    tag = await cluster.tag(topic)
    await proxy.wait_for_delivered(b"\nid: 20.20.20@%s\n\n" % tag.encode())
    await expect(count).to_have_text("0")

    assert await proxy.cut() >= 1
    resumed = (await proxy.wait_for_requests("/sse/", 2, timeout=WAIT_MS / 1000))[1]
    assert resumed.target == first.target
    assert resumed.headers.get("last-event-id") == f"20.20.20@{tag}"
    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    await cluster.produce(topic, typed("alert", 1), partition_of=[1])
    await expect(count).to_have_text("1", timeout=WAIT_MS)
    await expect(page.locator("#last-id")).to_have_text(f"20.21.20@{tag}")
