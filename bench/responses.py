"""The streaming response alone: the bridge's EventStream against sse-starlette and FastAPI's own SSE.

In one process, no network: CONNECTIONS streams are ASGI calls whose ``send``
counts bytes, fed BATCHES batches of RECORDS records each. Each alternative
is used the fastest way it allows:

- bridge: ``Channel.publish`` encodes each record once and hands each
  EventStream the batch as one chunk, written in one ``send``;
- sse-starlette: ``EventSourceResponse`` over a generator per connection
  that yields the batch's bytes, encoded once (it passes bytes through);
- FastAPI: a path operation with ``response_class=EventSourceResponse``
  yields one ``ServerSentEvent`` per record: its routing layer encodes every
  item itself, so neither encoding once nor one send per batch is possible.

Reported: CPU microseconds per connection per batch (time.process_time) and
Python memory per open connection (tracemalloc, a separate pass). Part of
``python -m bench`` (``--scenarios responses`` runs it alone).
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import uvloop
from fastapi import FastAPI
from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
from fastapi.sse import ServerSentEvent
from sse_starlette import EventSourceResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.config import Settings
from bridge.fanout.hub import Hub
from bridge.fanout.views import Subscription
from bridge.http.stream import EventStream
from bridge.kafka.catchup import CatchUps
from bridge.kafka.client import client_options
from bridge.wire import cursor as cursors
from bridge.wire.events import record_event

CONNECTIONS = 500
BATCHES = 100
RECORDS = 20
VALUE = b'{"t":1700000000000000000,"p":"' + b"x" * 68 + b'"}'
DONE_SECONDS = 120.0


class Record(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


class Variant(NamedTuple):
    """``app`` serves one stream; ``publish`` hands every stream one batch; ``streams`` counts those ready."""

    app: ASGIApp
    publish: Callable[[Sequence[Record]], None]
    streams: Callable[[], int]


def bridge_variant() -> Variant:
    settings = Settings()
    hub = Hub(
        ring_records=settings.ring_records,
        ring_bytes=settings.ring_bytes,
        ring_total_bytes=settings.ring_total_bytes,
        type_header=None,
    )
    channel = hub.open_channel("t", [0])
    view = hub.view(Subscription.of(["t"]))
    catchups = CatchUps(settings, client_options(settings))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        stream = EventStream(view, None, catchups, outbox_bytes=settings.outbox_bytes, heartbeat=15.0, retry_ms=2000,
                             stalled_client_seconds=settings.stalled_client_seconds)  # fmt: skip
        await stream(scope, receive, send)

    return Variant(app, channel.publish, lambda: len(view.subscribers))


def frames(batch: Sequence[Record]) -> list[bytes]:
    return [record_event(r, id=cursors.encode([r.offset + 1]), type_header=None) for r in batch]


def sse_starlette_variant() -> Variant:
    queues: list[asyncio.Queue[bytes]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.append(queue)

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield await queue.get()

        await EventSourceResponse(chunks(), ping=15)(scope, receive, send)

    def publish(batch: Sequence[Record]) -> None:
        chunk = b"".join(frames(batch))
        for queue in queues:
            queue.put_nowait(chunk)

    return Variant(app, publish, lambda: len(queues))


def fastapi_variant() -> Variant:
    queues: list[asyncio.Queue[Sequence[Record]]] = []
    api = FastAPI()

    @api.get("/sse", response_class=FastAPIEventSourceResponse)
    async def stream() -> AsyncIterator[ServerSentEvent]:
        queue: asyncio.Queue[Sequence[Record]] = asyncio.Queue()
        queues.append(queue)
        while True:
            for record in await queue.get():
                yield ServerSentEvent(raw_data=record.value.decode(), id=str(record.offset + 1))

    def publish(batch: Sequence[Record]) -> None:
        for queue in queues:
            queue.put_nowait(batch)

    return Variant(api, publish, lambda: len(queues))


async def measure(make: Callable[[], Variant], trace_memory: bool) -> dict[str, float]:
    variant = make()
    gone = asyncio.Event()
    events = [0] * CONNECTIONS
    all_done = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    def sender(index: int) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            events[index] += message.get("body", b"").count(b"data: ")
            if events[index] == BATCHES * RECORDS and all(n == BATCHES * RECORDS for n in events):
                all_done.set()

        return send

    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/sse", "raw_path": b"/sse", "root_path": "", "query_string": b"", "headers": [],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }  # fmt: skip
    if trace_memory:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace_memory else 0
    tasks = [asyncio.ensure_future(variant.app(dict(scope), receive, sender(i))) for i in range(CONNECTIONS)]
    for _ in range(10_000):  # until every stream waits for its first batch
        if variant.streams() == CONNECTIONS:
            break
        await asyncio.sleep(0)
    result: dict[str, float] = {}
    if trace_memory:
        result["kib_per_connection"] = round((tracemalloc.get_traced_memory()[0] - before) / CONNECTIONS / 1024, 2)
        tracemalloc.stop()
    else:
        cpu = time.process_time()
        for b in range(BATCHES):
            variant.publish([Record(0, b * RECORDS + i, None, VALUE, (), 0) for i in range(RECORDS)])
            await asyncio.sleep(0)
        await asyncio.wait_for(all_done.wait(), DONE_SECONDS)
        result["us_per_connection_batch"] = round(1e6 * (time.process_time() - cpu) / CONNECTIONS / BATCHES, 2)
    gone.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


VARIANTS: dict[str, Callable[[], Variant]] = {
    "bridge EventStream (encode once, one send per batch)": bridge_variant,
    "sse-starlette EventSourceResponse (batch bytes)": sse_starlette_variant,
    "FastAPI EventSourceResponse (one event per item)": fastapi_variant,
}


def run() -> list[dict[str, Any]]:
    results = []
    for name, make in VARIANTS.items():
        figures = uvloop.run(measure(make, trace_memory=False)) | uvloop.run(measure(make, trace_memory=True))
        results.append({"response": name, **figures})
    return results
