"""The page at / in Chromium as a first visit finds it: it streams at once
(the topics the bridge names with --page-topics, else the first it serves,
else it says that none is served and subscribes when one is); each row
shows a record's topic, partition, offset, key and time beside its value;
the subscription lives in the address (reload, Back and Forward); control
events stand out from records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from tests.browser.test_demo_page import ARTIFACTS, WAIT_MS
from tests.browser.test_topic_browser import choose_topics, typed
from tests.support.bridgeproc import BridgeProcess
from tests.support.cluster import Cluster, unique_topic

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

LOOK = "selector => { const s = getComputedStyle(document.querySelector(selector)); "\
       "return [s.backgroundColor, s.borderLeftWidth]; }"  # fmt: skip
LONG_LABEL = "a-topic-name-long-enough-that-it-must-wrap-to-be-read-" * 2


async def wait_for_event_type(bridge: BridgeProcess, topic: str, event_type: str) -> None:
    """Until GET /topics lists ``event_type`` among the types ``topic``'s recent records were given."""
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        for _ in range(100):
            served = {entry["topic"]: entry["event_types"] for entry in (await client.get("/topics")).json()["topics"]}
            if event_type in served.get(topic, []):
                return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{topic} never had an event of type {event_type}")


async def fits(page: Page, selector: str) -> bool:
    """The element shows all its text: nothing cut off or scrolled away."""
    return bool(await page.locator(selector).first.evaluate("e => e.scrollWidth <= e.clientWidth"))


async def test_the_page_streams_the_page_topics_at_once_with_each_records_metadata(
    page: Page, start_bridge: Callable[..., Any], cluster: Cluster
) -> None:
    page_errors: list[PlaywrightError] = []
    page.on("pageerror", lambda error: page_errors.append(error))
    other = await cluster.create_topic(unique_topic("aaa"), partitions=1)  # served, and first by name
    chosen = await cluster.create_topic(unique_topic(LONG_LABEL), partitions=3)
    bridge: BridgeProcess = await start_bridge(topics=f"{other},{chosen}", page_topics=chosen)
    await bridge.wait_for_topic(chosen, 3)
    await bridge.wait_for_topic(other, 1)
    await bridge.watch(chosen)  # read from now on: /topics learns its records' types
    # A type header names this record's type: the page learns it from /topics and listens for it too.
    await cluster.produce(chosen, [b"{}"], headers=[("event-type", b"created")])
    await wait_for_event_type(bridge, chosen, "created")

    await page.goto(f"{bridge.url}/")
    await expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    assert page.url == f"{bridge.url}/?topic={chosen}&format=envelope"
    await expect(page.locator("#url")).to_have_text(f"/sse/{chosen}?format=envelope")

    await cluster.produce(chosen, [b'{"n": 1,  "big": 12345678901234567890}'], partition_of=[2])
    row = page.locator("#records li.record").first
    await expect(row.locator(".data")).to_have_text('{"n": 1,  "big": 12345678901234567890}', timeout=WAIT_MS)
    await expect(row.locator(".topic")).to_have_text(chosen)
    await expect(row.locator(".where")).to_have_text("p2 @0")
    await expect(row.locator(".key")).to_have_text("0")
    shown_at = datetime.fromisoformat(str(await row.locator(".time").get_attribute("title")))
    assert abs((datetime.now(UTC) - shown_at).total_seconds()) < 60
    await cluster.produce(chosen, [b'{"n": 2}'], partition_of=[1], headers=[("event-type", b"created")])
    await expect(page.locator("#records li.record")).to_have_count(2, timeout=WAIT_MS)
    named = page.locator("#records li.record").first
    await expect(named.locator(".type")).to_have_text("created")
    await expect(named.locator(".headers")).to_have_text("event-type=created")

    # Long topic names wrap rather than being cut short, in the list and in the rows.
    await expect(page.locator(f"#topics label[data-topic='{chosen}'] .name")).to_have_text(chosen)
    assert await fits(page, f"#topics label[data-topic='{chosen}'] .name")
    assert await fits(page, "#records li.record .topic")
    await expect(page.locator("#rate")).not_to_have_text("0.0", timeout=WAIT_MS)
    await expect(page.locator("#chart rect")).not_to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "page-opens.png", full_page=True)
    assert page_errors == []


async def test_with_no_topic_served_the_page_says_so_and_subscribes_when_one_is(
    page: Page, start_bridge: Callable[..., Any], cluster: Cluster
) -> None:
    prefix = unique_topic("later")
    bridge: BridgeProcess = await start_bridge(topics=f"{prefix}*")
    await page.goto(f"{bridge.url}/")
    await expect(page.locator("#notice")).to_contain_text("No topic is served yet", timeout=WAIT_MS)
    await expect(page.locator("#state")).to_have_attribute("data-state", "waiting")

    created = await cluster.create_topic(f"{prefix}-x", partitions=1)
    await expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    assert page.url == f"{bridge.url}/?topic={created}&format=envelope"
    await expect(page.locator("#notice")).to_have_text("")
    await cluster.produce(created, [b'"hello"'], partitions=1)
    await expect(page.locator("#records li.record .data")).to_have_text('"hello"', timeout=WAIT_MS)


async def test_the_address_is_the_subscription_through_reload_back_and_forward(
    page: Page, bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    second = await cluster.create_topic(unique_topic("b"), partitions=1)
    await bridge.wait_for_topic(second, 1)
    state, stream_url = page.locator("#state"), page.locator("#url")
    await page.goto(f"{bridge.url}/?topic={topic}")
    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    first_address = page.url
    assert first_address == f"{bridge.url}/?topic={topic}&format=envelope"

    await choose_topics(page, [second])
    await page.fill("#where", "type==alert")
    await page.check("input[name=format][value=raw]")
    await page.click("#apply")
    filtered = f"/sse/{second}?where=type%3D%3Dalert&format=raw"
    await expect(stream_url).to_have_text(filtered)
    second_address = page.url
    assert second_address == f"{bridge.url}/?topic={second}&where=type%3D%3Dalert&format=raw"

    await page.reload()
    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    await expect(stream_url).to_have_text(filtered)
    await expect(page.locator("#where")).to_have_value("type==alert")
    await expect(page.locator(f"#topics input[value='{second}']")).to_be_checked()
    await expect(page.locator(f"#topics input[value='{topic}']")).not_to_be_checked()
    await expect(page.locator("input[name=format][value=raw]")).to_be_checked()
    await cluster.produce(second, [*typed("info", 1), *typed("alert", 1, start=1)], partitions=1)
    await expect(page.locator("#records .data")).to_have_text('{"type":"alert","n":1}', timeout=WAIT_MS)

    await page.go_back()
    assert page.url == first_address
    await expect(stream_url).to_have_text(f"/sse/{topic}?format=envelope")
    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    await expect(page.locator("#where")).to_have_value("")
    await expect(page.locator(f"#topics input[value='{topic}']")).to_be_checked()
    await expect(page.locator("input[name=format][value=envelope]")).to_be_checked()
    await cluster.produce(topic, typed("info", 1, start=2), partition_of=[0])
    await expect(page.locator("#records li.record .topic")).to_have_text(topic, timeout=WAIT_MS)

    await page.go_forward()
    assert page.url == second_address
    await expect(stream_url).to_have_text(filtered)
    await expect(state).to_have_attribute("data-state", "open", timeout=WAIT_MS)


async def test_a_control_event_stands_out_from_the_records(
    page: Page, start_bridge: Callable[..., Any], cluster: Cluster, topic: str
) -> None:
    # Records 0-3 of partition 0 removed as retention would: a client from 0.0.0 is told with a gap event.
    await cluster.produce(topic, typed("info", 6), partition_of=[0] * 6)
    await cluster.delete_records(topic, {0: 4})
    bridge: BridgeProcess = await start_bridge()
    await bridge.wait_for_topic(topic, 3)

    await page.goto(f"{bridge.url}/?topic={topic}&lastEventId=0.0.0")
    control = page.locator("#records li.control")
    await expect(control.locator(".type")).to_have_text("gap", timeout=WAIT_MS)
    await expect(control.locator(".data")).to_contain_text('"partition":0,"requested":0,"first_available":4')
    records = page.locator("#records li.record")
    await expect(records).to_have_count(2, timeout=WAIT_MS)
    await expect(records.locator(".where")).to_have_text(["p0 @5", "p0 @4"])  # newest first
    await expect(page.locator("#count")).to_have_text("2")  # records counted, the notice not

    assert await page.evaluate(LOOK, "#records li.control") != await page.evaluate(LOOK, "#records li.record")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "page-control-event.png", full_page=True)
