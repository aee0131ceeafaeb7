"""The bridge's protocol under uvicorn on loopback: what it changes of uvicorn's
per-connection state (the pipeline deque made on demand, the request's
and the flow control's MessageEvent, the connection-lost future) keeps
HTTP/1.1 working, what it adds (writing a body chunk at once) frames chunks
as uvicorn does, and a response's adopted rest runs after its app returned."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from bridge.http.protocol import (
    ADOPT,
    CONNECTION_LOST,
    BoundedHttpToolsProtocol,
    MessageEvent,
    defer_to_adopted,
    listening_socket,
)
from bridge.http.stall import scope_write

lost_seen: list[str] = []
refused_after: list[int] = []  # per /fill request: the writes at once taken before one was refused
adoption_seen: list[str] = []  # in order: the app returned, the rest ended, the deferred callback


async def adopting(scope: Scope, receive: Receive, send: Send) -> None:
    """As a stream under the limits: starts its response, hands the rest over, returns."""
    path = scope["path"]
    await send({"type": "http.response.start", "status": 200, "headers": []})

    async def rest(send: Send) -> None:
        await send({"type": "http.response.body", "body": b"adopted", "more_body": True})
        if path == "/adopt-fails":
            raise RuntimeError("the adopted rest failed")
        await asyncio.shield(scope["extensions"][CONNECTION_LOST]["future"])
        adoption_seen.append("rest ended")

    scope["extensions"][ADOPT].adopt(rest)
    assert defer_to_adopted(scope, lambda: adoption_seen.append("deferred"))
    adoption_seen.append("app returned")
    if path == "/adopt-then-fail":
        raise RuntimeError("the app failed after handing over")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"].startswith("/adopt"):
        await adopting(scope, receive, send)
        return
    if scope["path"] == "/hold":  # as a stream: waits for the connection to go, never calls receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held", "more_body": True})
        await asyncio.shield(scope["extensions"][CONNECTION_LOST]["future"])
        lost_seen.append(scope["path"])
        return
    if scope["path"] == "/direct":  # chunks written at once and sent the ASGI way, interleaved
        write = scope_write(scope)
        assert write is not None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert write(b"one,")
        await send({"type": "http.response.body", "body": b"two,", "more_body": True})
        assert write(b"three")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        assert not write(b"after the end")
        return
    if scope["path"] == "/fill":  # a client that reads nothing: writes at once stop once the transport pauses
        write = scope_write(scope)
        assert write is not None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"x" * 65536
        refused_after.append(next((n for n in range(400) if not write(piece)), -1))  # at most 26 MB
        await asyncio.shield(scope["extensions"][CONNECTION_LOST]["future"])
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = scope["path"].encode() + b":" + body
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    sock = listening_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, http=BoundedHttpToolsProtocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve([sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    await serving


async def read_response(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length"))
        return await reader.readexactly(length)


async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(3)))
    assert [await read_response(reader) for _ in range(3)] == [b"/0:", b"/1:", b"/2:"]
    writer.close()


async def test_a_body_arriving_in_parts_is_received_whole(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    await writer.drain()
    await asyncio.sleep(0.05)  # the app waits in receive() for the rest
    writer.write(b"def")
    assert await read_response(reader) == b"/body:abcdef"
    writer.close()


async def test_a_response_hears_of_its_lost_connection_without_receive(port: int) -> None:
    lost_seen.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"held")
    assert lost_seen == []
    writer.close()
    async with asyncio.timeout(5):
        while not lost_seen:  # noqa: ASYNC110 (the app's own record is what is checked)
            await asyncio.sleep(0.01)
    assert lost_seen == ["/hold"]


async def test_chunks_written_at_once_are_framed_and_ordered_with_those_sent(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /direct HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readuntil(b"0\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
    writer.close()


async def test_a_client_that_reads_nothing_is_written_to_at_once_only_until_its_transport_pauses(port: int) -> None:
    refused_after.clear()
    _unread, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    writer.write(b"GET /fill HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(10):
        while not refused_after:  # noqa: ASYNC110 (the app's own record is what is checked)
            await asyncio.sleep(0.01)
    assert refused_after[0] > 0  # the kernel's buffers took some, then uvicorn's flow control paused
    writer.transport.abort()


async def test_message_event_wakes_its_waiter_and_survives_a_cancelled_one() -> None:
    event = MessageEvent()
    cancelled = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    event.set()
    async with asyncio.timeout(5):
        assert await waiter is True
    assert event.is_set()
    assert await event.wait() is True  # set: at once
    event.clear()
    assert not event.is_set()


async def test_message_event_waiters_outlive_one_of_them_cancelled() -> None:
    event = MessageEvent()
    first, second = asyncio.create_task(event.wait()), asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    event.set()
    async with asyncio.timeout(5):
        assert await second is True


async def test_an_adopted_rest_runs_after_the_app_returned_and_its_deferred_callback_after_it(port: int) -> None:
    adoption_seen.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /adopt HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        await reader.readuntil(b"adopted")
    await asyncio.sleep(0.05)
    assert adoption_seen == ["app returned"]  # and the connection is still open: uvicorn did not close it
    assert not reader.at_eof()
    writer.close()
    async with asyncio.timeout(5):
        while len(adoption_seen) < 3:  # noqa: ASYNC110 (the app's own record is what is checked)
            await asyncio.sleep(0.01)
    assert adoption_seen == ["app returned", "rest ended", "deferred"]


@pytest.mark.parametrize(("path", "logged"), [("/adopt-fails", "the adopted rest failed"),
                                              ("/adopt-then-fail", "the app failed after handing over")])  # fmt: skip
async def test_a_failure_after_handing_over_is_logged_and_closes_the_connection(
    port: int, caplog: pytest.LogCaptureFixture, path: str, logged: str
) -> None:
    adoption_seen.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        async with asyncio.timeout(5):
            await reader.read()  # until the server closed the connection
            while "deferred" not in adoption_seen:  # noqa: ASYNC110 (the app's own record is what is checked)
                await asyncio.sleep(0.01)
    assert any(logged in str(record.exc_info[1]) for record in caplog.records if record.exc_info)
    writer.close()


async def test_flow_control_drains_on_its_message_event(port: int) -> None:
    config = uvicorn.Config(app, http=BoundedHttpToolsProtocol, lifespan="off")
    config.load()
    protocol = BoundedHttpToolsProtocol(config, ServerState(), {})
    transport, _ = await asyncio.get_running_loop().create_connection(lambda: protocol, "127.0.0.1", port)
    assert isinstance(protocol.flow._is_writable_event, MessageEvent)
    assert protocol.flow._is_writable_event.is_set()
    protocol.pause_writing()
    drained = asyncio.create_task(protocol.flow.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()
    protocol.resume_writing()
    async with asyncio.timeout(5):
        await drained
    transport.close()
