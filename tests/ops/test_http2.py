"""Past the browser's six connections: Debian's Chromium through the compose
stack's nginx (config/nginx for real on loopback, its HTTPS listener with the
certificate the lb-cert service's script makes) in front of two bridge
processes. Over HTTP/2 ten EventSources of one page share one connection and
all get live records; over the HTTP/1.1 listener the seventh and later wait
for a connection that never frees. Resume by Last-Event-ID, and a stream the
bridge ends, pass through HTTP/2 as well.

Chromium accepts the self-signed certificate through Playwright's
``ignore_https_errors`` (the browser context's, for this test only), as a
developer would click through it or trust it once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from tests.ops.nginxproc import Nginx, running_nginx
from tests.ops.replicas import serving_replica, until
from tests.support.bridgeproc import BridgeProcess
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

StartBridge = Callable[..., Any]

STREAMS = 10
HTTP1_PER_ORIGIN = 6  # Chromium's HTTP/1.1 connections to one origin
CONNECTING = 0  # EventSource.readyState while it waits for, or re-makes, its connection
CLEAN_EXITS = (0, -signal.SIGTERM)
RETRY_MS = 3000  # the reconnect delay the bridge tells browsers: time to produce what the browser misses

# EventSources on the page's own origin; what each sees is kept in window.__streams.
OPEN_STREAMS = """
([path, count]) => {
  window.__sources = [];
  window.__streams = [];
  for (let i = 0; i < count; i++) {
    const stream = { opened: 0, events: [], errors: [] };
    const source = new EventSource(path);
    source.onopen = () => { stream.opened += 1; };
    source.onmessage = (event) => { stream.events.push([event.lastEventId, event.data]); };
    source.onerror = () => { stream.errors.push(source.readyState); };
    window.__sources.push(source);
    window.__streams.push(stream);
  }
}
"""
STREAM_STATES = "() => window.__streams.map((stream, i) => ({...stream, state: window.__sources[i].readyState}))"
PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"


@pytest.fixture
async def replicas(start_bridge: StartBridge, topic: str) -> list[BridgeProcess]:
    started: list[BridgeProcess] = [await start_bridge(retry_ms=str(RETRY_MS), drain_seconds="1") for _ in range(2)]
    for replica in started:
        await replica.wait_for_topic(topic, 3)
    return started


@pytest.fixture
async def lb(replicas: list[BridgeProcess]) -> AsyncIterator[Nginx]:
    async with running_nginx([replica.port for replica in replicas]) as nginx:
        yield nginx


async def page_on(browser: Browser, origin: str) -> tuple[BrowserContext, Page]:
    """A page of ``origin`` (a fresh context: its own connections), loaded from the bridge through nginx."""
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    response = await page.goto(f"{origin}/healthz")
    assert response is not None
    assert response.ok, response.status
    return context, page


async def states(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate(STREAM_STATES)
    return found


Condition = Callable[[list[dict[str, Any]]], bool]


async def settle(page: Page, condition: Condition, timeout: float) -> tuple[bool, list[dict[str, Any]]]:
    """Whether the page's streams meet ``condition`` within ``timeout``, and their last states."""
    deadline = time.monotonic() + timeout
    while True:
        latest = await states(page)
        if condition(latest):
            return True, latest
        if time.monotonic() > deadline:
            return False, latest
        await asyncio.sleep(0.05)


async def wait_for(page: Page, condition: Condition, timeout: float, what: str) -> None:
    met, latest = await settle(page, condition, timeout)
    if not met:
        pytest.fail(f"not within {timeout} s: {what}; the streams: {latest}")


def numbered(start: int, count: int) -> list[bytes]:
    return [orjson.dumps({"n": n}) for n in range(start, start + count)]


async def ten_streams(
    browser: Browser, origin: str, cluster: Cluster, topic: str, first: int
) -> tuple[str, list[dict[str, Any]]]:
    """Ten EventSources of one page on ``origin``: the page's protocol, and what
    each stream has once those that could open got three records produced after
    they opened."""
    context, page = await page_on(browser, origin)
    try:
        protocol: str = await page.evaluate(PROTOCOL)
        await page.evaluate(OPEN_STREAMS, [f"/sse/{topic}", STREAMS])
        # over HTTP/1.1 the ones past the sixth never open: what did is asserted by the caller
        _, found = await settle(page, lambda found: all(s["opened"] for s in found), 5)
        opened = sum(1 for s in found if s["opened"])
        values = numbered(first, 3)
        await cluster.produce(topic, values, partition_of=[0] * len(values))  # one partition: one order
        await wait_for(page, lambda found: sum(len(s["events"]) == 3 for s in found) >= opened, 10,
                       "the open streams' records")  # fmt: skip
        await asyncio.sleep(1)  # and any stream that was to get them late has had the time to
        found = await states(page)
        for stream in found:
            assert [data for _, data in stream["events"]] in ([], [value.decode() for value in values]), stream
        return protocol, found
    finally:
        await context.close()


async def test_ten_event_sources_of_one_page_all_get_live_records_over_http2_and_stall_past_six_over_http1(
    browser: Browser, lb: Nginx, cluster: Cluster, topic: str
) -> None:
    protocol, over_http2 = await ten_streams(browser, lb.tls_url, cluster, topic, first=0)
    assert protocol == "h2"
    assert [(s["opened"], len(s["events"]), s["errors"]) for s in over_http2] == [(1, 3, [])] * STREAMS
    await until(lambda: len(lb.requests(f"/sse/{topic}")) == STREAMS, 5, "nginx logs the ten streams as they end")
    assert all(" HTTP/2.0" in line for line in lb.requests(f"/sse/{topic}")), lb.requests(f"/sse/{topic}")

    protocol, over_http1 = await ten_streams(browser, lb.url, cluster, topic, first=3)
    assert protocol == "http/1.1"
    served = [s for s in over_http1 if s["opened"]]
    waiting = [s for s in over_http1 if not s["opened"]]
    assert [(len(s["events"]), s["errors"]) for s in served] == [(3, [])] * HTTP1_PER_ORIGIN
    # the rest never got a connection: still connecting, no error, no record
    assert [(s["state"], s["events"], s["errors"]) for s in waiting] == [(CONNECTING, [], [])] * (
        STREAMS - HTTP1_PER_ORIGIN
    )
    await until(lambda: len(lb.requests(f"/sse/{topic}")) == STREAMS + HTTP1_PER_ORIGIN, 5, "nginx logs six more")
    http1 = [line for line in lb.requests(f"/sse/{topic}") if " HTTP/1.1" in line]
    assert len(http1) == HTTP1_PER_ORIGIN, "the requests past the sixth never left the browser"


async def test_a_stream_the_bridge_ends_reaches_the_browser_over_http2_which_resumes_by_last_event_id(
    browser: Browser, lb: Nginx, replicas: list[BridgeProcess], cluster: Cluster, topic: str
) -> None:
    """The replica serving the page's stream gets SIGTERM (a deploy): its end
    comes through nginx's HTTP/2 stream as an end, not a stream left hanging;
    the browser comes back by itself with Last-Event-ID, lands on the other
    replica, and gets exactly what it missed."""
    context, page = await page_on(browser, lb.tls_url)
    try:
        assert await page.evaluate(PROTOCOL) == "h2"
        await page.evaluate(OPEN_STREAMS, [f"/sse/{topic}", 1])
        await wait_for(page, lambda found: found[0]["opened"] == 1, 10, "the stream open")
        before = numbered(0, 5)
        await cluster.produce(topic, before, partition_of=[0] * len(before))
        await wait_for(page, lambda found: len(found[0]["events"]) == len(before), 10, "the first records")
        last_id = (await states(page))[0]["events"][-1][0]

        first = serving_replica(replicas, topic)
        assert await asyncio.to_thread(first.stop, signal.SIGTERM) in CLEAN_EXITS, first.log()
        await wait_for(page, lambda found: found[0]["errors"] == [CONNECTING], 5, "the end, in the browser")
        # and nginx is done with that HTTP/2 stream (it logs a request as it ends), the page still open
        await until(lambda: len(lb.requests(f"/sse/{topic}")) == 1, 5, "nginx ends the stream")
        missed = numbered(len(before), 7)
        await cluster.produce(topic, missed, partition_of=[0] * len(missed))  # while the browser waits its retry

        await wait_for(page, lambda found: found[0]["opened"] == 2, RETRY_MS / 1000 + 10, "the browser back")
        expected = [value.decode() for value in before + missed]
        await wait_for(page, lambda found: len(found[0]["events"]) >= len(expected), 10, "the missed records")
        await asyncio.sleep(1)  # nothing more may come, nothing twice
        (stream,) = await states(page)
        assert [data for _, data in stream["events"]] == expected
    finally:
        await context.close()
    await until(lambda: len(lb.requests(f"/sse/{topic}")) == 2, 5, "nginx logs both streams")
    ended, resumed = lb.requests(f"/sse/{topic}")
    assert " HTTP/2.0" in ended, ended
    assert " HTTP/2.0" in resumed, resumed
    assert f"upstream=127.0.0.1:{first.port} upstream_status=200" in ended, ended
    assert f'last_event_id="{last_id}"' in resumed, resumed
