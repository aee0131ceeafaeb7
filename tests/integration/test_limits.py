"""Connection limits and request bounds of a bridge started as users start it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.support.bridgeproc import BridgeProcess, open_stream
from tests.support.rawhttp import RawResponse, exchange, get
from tests.support.scrape import scrape

pytestmark = pytest.mark.kafka


def assert_refused(response: RawResponse, status: int, error: str) -> None:
    assert response.status == status, response
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert isinstance(body, dict)
    assert body["error"] == error
    assert body["message"]


@asynccontextmanager
async def streams_from(bridge: BridgeProcess, topic: str, *forwarded_for: str) -> AsyncIterator[None]:
    """One open stream per ``X-Forwarded-For`` value, for as long as the block runs."""
    async with AsyncExitStack() as stack:
        for value in forwarded_for:
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=bridge.url, timeout=10))
            request = client.build_request("GET", f"/sse/{topic}", headers={"X-Forwarded-For": value})
            response = await client.send(request, stream=True)
            stack.push_async_callback(response.aclose)
            assert response.status_code == 200
        yield


async def test_limits_per_client_behind_a_trusted_proxy_and_per_process(
    start_bridge: Callable[..., Any], topic: str
) -> None:
    bridge = await start_bridge(max_connections="4", max_connections_per_ip="2", trusted_proxies="127.0.0.0/8")
    await bridge.wait_for_topic(topic, 3)
    stream = f"/sse/{topic}"
    async with streams_from(bridge, topic, "203.0.113.5", "198.51.100.1, 203.0.113.5"):
        # What the client wrote left of the proxy's entry does not make it someone else.
        for spoofed in ("203.0.113.5", "9.9.9.9, 203.0.113.5", "203.0.113.5, 127.0.0.9"):
            response = await exchange(bridge.port, get(stream, f"X-Forwarded-For: {spoofed}"))
            assert_refused(response, 429, "too_many_connections")
        # the route for several topics counts too
        response = await exchange(bridge.port, get(f"/sse?topic={topic}", "X-Forwarded-For: 203.0.113.5"))
        assert_refused(response, 429, "too_many_connections")
        async with streams_from(bridge, topic, "203.0.113.6", "203.0.113.7"):
            assert_refused(await exchange(bridge.port, get(stream, "X-Forwarded-For: 203.0.113.8")), 503, "server_full")
            async with httpx.AsyncClient(base_url=bridge.url) as client:  # other routes are not limited
                assert (await client.get("/healthz")).status_code == 200
        # Slots come back when streams end.
        async with streams_from(bridge, topic, "203.0.113.8", "203.0.113.9"):
            pass
    metrics = await scrape(bridge)
    assert metrics.value("streams_refused_total", reason="too_many_connections") == 4
    assert metrics.value("streams_refused_total", reason="server_full") == 1


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(start_bridge: Callable[..., Any], topic: str) -> None:
    bridge = await start_bridge(max_connections_per_ip="2")
    await bridge.wait_for_topic(topic, 3)
    async with streams_from(bridge, topic, "203.0.113.1", "203.0.113.2"):
        response = await exchange(bridge.port, get(f"/sse/{topic}", "X-Forwarded-For: 203.0.113.3"))
        assert_refused(response, 429, "too_many_connections")
    async with open_stream(bridge.url, topic):
        pass


async def test_request_heads_and_ids_are_bounded(bridge: BridgeProcess, topic: str) -> None:
    stream = f"/sse/{topic}"
    too_large = [
        get(stream, "X-Padding: " + "a" * 20_000),
        get(stream + "?lastEventId=1&pad=" + "b" * 20_000),
        get(stream, *(f"X-Many-{n}: {n}" for n in range(2000))),
    ]
    for request in too_large:
        response = await exchange(bridge.port, request)
        assert response.status == 431
        assert response.json() == {
            "error": "request_too_large",
            "message": "request line and headers are limited to 16384 bytes",
        }
    too_long_id = "1." * 4096 + "1"  # one character past cursor.MAX_CURSOR_LENGTH, well within the head bound
    for request in (get(stream, "Last-Event-ID: " + too_long_id), get(stream + "?lastEventId=" + too_long_id)):
        response = await exchange(bridge.port, request)
        assert response.status == 400
        assert response.json()["error"] in {"bad_event_id", "bad_request"}  # type: ignore[index]
    # Not HTTP at all: the bridge's JSON error, not uvicorn's plain text
    response = await exchange(bridge.port, b"\x16\x03\x01 hello\r\n\r\n")
    assert response.status == 400
    assert response.json()["error"] == "bad_http_request"  # type: ignore[index]
    # The bridge still serves.
    async with open_stream(bridge.url, topic):
        pass
