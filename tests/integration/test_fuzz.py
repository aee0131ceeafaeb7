"""Bad input from everywhere: generated requests answer only documented 4xx
(JSON bodies), never a 5xx, a traceback in the log or a hang.

Two generators: schemathesis draws requests from the bridge's own OpenAPI
schema (GET /openapi.json of the running bridge) in positive and negative
modes; hypothesis draws raw HTTP requests for the stream route that no schema
describes (odd methods, unicode and dot-dot topics, very long values, bytes
that are not UTF-8). Example counts are bounded so the suite stays fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import openapi
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from tests.support.bridgeproc import BridgeProcess
from tests.support.rawhttp import RawResponse, exchange, get

pytestmark = pytest.mark.kafka

FUZZ = settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
# 429/431/503 are the limits' and the head bound's; 405 for methods a route has not; 422 never (400 instead)
EXPECTED_ERRORS = {400, 404, 405, 429, 431, 503}


def assert_documented(status: int, content_type: str, body: bytes | None, what: object) -> None:
    """``body`` None: the answer has none (HEAD) or it is a stream."""
    assert status < 500, what
    if status >= 400:
        assert status in EXPECTED_ERRORS, what
        assert content_type == "application/json", what
        assert body is None or body.startswith(b'{"error":"'), (what, body)


def assert_no_traceback(bridge: BridgeProcess) -> None:
    log = bridge.log()
    assert "Traceback" not in log, log[-4000:]
    assert "Exception in ASGI application" not in log


async def test_requests_drawn_from_the_openapi_schema(bridge: BridgeProcess, topic: str) -> None:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        document = await client.get("/openapi.json")
    assert document.status_code == 200
    schema = openapi.from_dict(document.json())
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results  # the schema itself is valid
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert {operation.path for operation in operations} >= {"/sse/{topic}", "/readyz", "/topics"}

    def run(operation: Any, strategy: Any) -> None:
        @FUZZ
        @given(strategy)
        def check(case: Any) -> None:
            request = case.as_transport_kwargs(base_url=bridge.url)
            request.pop("cookies", None)
            # streamed: a request that opens a stream reads its head only
            with requests.request(**request, timeout=10, stream=True) as response:
                body = None if response.status_code == 200 else response.content
                what = (case.method, case.formatted_path, case.headers, case.query)
                assert_documented(response.status_code, response.headers.get("content-type", ""), body, what)
                if response.status_code == 200:
                    documented = operation.definition.raw["responses"]["200"].get("content") or {"application/json": 0}
                    assert response.headers["content-type"].split(";")[0] in documented, what

        check()

    for operation in operations:
        await asyncio.to_thread(run, operation, operation.as_strategy(GenerationMode.POSITIVE))
    # Values the schema rules out exist only for the stream route (the others take no
    # parameter or any string); on a topic it serves, where ids and since are read.
    stream_route = schema["/sse/{topic}"]["GET"]
    await asyncio.to_thread(run, stream_route, stream_route.as_strategy(GenerationMode.NEGATIVE))
    for mode in GenerationMode:
        await asyncio.to_thread(run, stream_route, stream_route.as_strategy(mode, path_parameters={"topic": topic}))
    assert_no_traceback(bridge)


# Header values: any byte but CR, LF and NUL (those would end the header or the request itself).
header_values = st.binary(max_size=300).map(lambda raw: raw.translate(None, b"\r\n\x00"))
odd_topics = st.sampled_from(
    ["..", "%2e%2e", "..%2f..%2fetc%2fpasswd", "__consumer_offsets", "%5f%5fconsumer_offsets", "t" * 250,
     "x" * 20_000, "caf%C3%A9", "%FF%FE", "%00", "a%0d%0aInjected:%20yes", "*", "test-*", ""]
)  # fmt: skip


async def test_raw_requests_for_the_stream_route(bridge: BridgeProcess, topic: str) -> None:
    loop = asyncio.get_running_loop()

    def send(request: bytes) -> RawResponse:
        return asyncio.run_coroutine_threadsafe(exchange(bridge.port, request, timeout=10), loop).result()

    @FUZZ
    @given(
        method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"]),
        path_topic=st.one_of(odd_topics, st.just(topic), st.text(max_size=80).map(lambda text: text.replace(" ", ""))),
        event_id=st.one_of(st.none(), header_values, st.sampled_from([b"0.0.0", b"1.2.3", b"-1", b"1e3", b"\xd9\xa1"])),
        query=st.one_of(st.none(), st.dictionaries(st.sampled_from(["since", "lastEventId", "x", "since[]"]),
                                                   st.text(max_size=60), max_size=3)),
    )  # fmt: skip
    def check(method: str, path_topic: str, event_id: bytes | None, query: dict[str, str] | None) -> None:
        target = f"/sse/{path_topic}"
        if query:
            target += "?" + urlencode(query)
        headers = [b"Last-Event-ID: " + event_id] if event_id is not None else []
        response = send(get(target, *headers, method=method))
        body = None if method == "HEAD" or response.status == 200 else response.body
        assert_documented(response.status, response.headers.get("content-type", ""), body, (method, target, event_id))

    await asyncio.to_thread(check)
    assert_no_traceback(bridge)


async def test_the_bridge_serves_after_the_fuzzing(bridge: BridgeProcess, start_bridge: Callable[..., Any]) -> None:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        assert (await client.get("/readyz")).status_code == 200
    response = await exchange(bridge.port, get("/sse/" + "y" * 100))
    assert response.status == 404
