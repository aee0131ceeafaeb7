"""EventStream handed over to the protocol (protocol.ADOPT) and under a server
without that extension: the same stream, written, ended and let go of."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Scope

from bridge.config import Settings
from bridge.fanout.hub import Hub
from bridge.fanout.outbox import CloseReason
from bridge.fanout.views import Subscription
from bridge.http.protocol import ADOPT, CONNECTION_LOST, Adoption
from bridge.http.stream import EventStream
from bridge.kafka.catchup import CatchUps
from bridge.kafka.client import client_options

HEARTBEAT = 0.01


class Sent(list[Message]):
    async def __call__(self, message: Message) -> None:
        self.append(message)


def open_stream(closed: list[str]) -> tuple[Hub, EventStream]:
    settings = Settings()
    hub = Hub(ring_records=100, ring_bytes=2**20, ring_total_bytes=2**20, type_header=None)
    hub.open_channel("t", [0])
    view = hub.view(Subscription.of(["t"]))
    stream = EventStream(view, None, CatchUps(settings, client_options(settings)), outbox_bytes=65536,
                         heartbeat=HEARTBEAT, retry_ms=1000, stalled_client_seconds=30.0,
                         on_close=lambda: closed.append("on_close"))  # fmt: skip
    return hub, stream


async def test_a_stream_without_the_extension_runs_in_the_app_until_it_ends() -> None:
    closed: list[str] = []
    hub, stream = open_stream(closed)
    sent = Sent()
    disconnected = asyncio.Event()

    async def receive() -> Message:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    scope: Scope = {"type": "http", "headers": []}
    running = asyncio.create_task(stream(scope, receive, sent))
    await asyncio.sleep(5 * HEARTBEAT)
    assert not running.done()
    assert len(stream.view.subscribers) == 1
    assert sent[0]["type"] == "http.response.start"
    assert any(message.get("body") == b":\n\n" for message in sent[2:])  # heartbeats through the app's send
    hub.close_all(CloseReason.SHUTDOWN)
    async with asyncio.timeout(5):
        await running
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert closed == ["on_close"]
    assert not stream.view.subscribers
    assert stream.stats.streams_closed[CloseReason.SHUTDOWN] == 1


async def test_an_adopted_stream_returns_at_once_writes_with_the_servers_send_and_ends_with_the_connection() -> None:
    closed: list[str] = []
    _, stream = open_stream(closed)
    framework, server = Sent(), Sent()
    adoption, lost = Adoption(), asyncio.get_running_loop().create_future()
    scope: Scope = {"type": "http", "headers": [], "extensions": {ADOPT: adoption, CONNECTION_LOST: {"future": lost}}}

    async def receive() -> Message:
        raise AssertionError("a stream with the connection-lost future never calls receive()")

    async with asyncio.timeout(5):
        await stream(scope, receive, framework)  # returns: the rest is adopted
    assert [message["type"] for message in framework] == ["http.response.start", "http.response.body"]
    assert adoption.defer(lambda: closed.append("deferred"))
    running = asyncio.create_task(adoption.run(server))
    await asyncio.sleep(5 * HEARTBEAT)
    assert len(stream.view.subscribers) == 1
    assert closed == []
    assert server
    assert all(message.get("body", b"").startswith(b":") for message in server)  # heartbeats, the server's send
    assert len(framework) == 2
    lost.set_result(None)
    async with asyncio.timeout(5):
        await running
    assert closed == ["on_close", "deferred"]
    assert not stream.view.subscribers
    assert stream.stats.streams_closed[CloseReason.CLIENT_LEFT] == 1
