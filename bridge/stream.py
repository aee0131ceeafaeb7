"""One SSE connection, as an ASGI response.

A connection is a race of two small tasks, the first to finish ends it:

- the writer takes whatever the subscriber's outbox holds and writes it in
  one ``send``, or a heartbeat comment after ``heartbeat`` idle seconds;
- the listener waits for the client to go away (``http.disconnect``; after a
  disconnect uvicorn's ``send`` returns silently, only ``receive`` tells).

A client that resumes from further back than the ring has a third task, its
catch-up, until it has joined the live channel.

The hub may also close the subscriber: for being slow (its outbox passed its
bound, and the writer may be stuck in ``send`` on a full TCP window, so it is
cancelled and the connection dropped), for a shutdown or a failed catch-up
(the stream ends cleanly and the browser reconnects). So does a timer when the
client's token expires: a ``reauth`` event, then the stream ends cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from bridge import sse
from bridge.catchup import CatchUps, Since
from bridge.events import reauth_event
from bridge.hub import Channel, CloseReason, Resume, Subscriber

HEARTBEAT = sse.format_comment()
TOKEN_EXPIRED = reauth_event(CloseReason.TOKEN_EXPIRED.value)
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SlowClientDisconnect(Exception):
    """Raised to make the server drop a connection whose client fell too far
    behind; uvicorn closes the transport, and ``server`` keeps it out of the
    error log."""


class EventStream(Response):
    """Not a body to render but a live stream; a Response subclass only so the
    framework hands it the connection as it is."""

    media_type = "text/event-stream"

    def __init__(self, channel: Channel, start: tuple[int, ...] | Since | None, catchups: CatchUps, *,
                 outbox_bytes: int, heartbeat: float, retry_ms: int,
                 expires_at: float | None = None) -> None:  # fmt: skip
        self.status_code = 200
        self.background = None
        self.channel = channel
        self.start = start
        self.catchups = catchups
        self.outbox_bytes = outbox_bytes
        self.heartbeat = heartbeat
        self.expires_at = expires_at  # epoch seconds: the client's token ends then
        self.preamble = sse.format_retry(retry_ms) + sse.format_comment("kafka-sse-bridge")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscriber = Subscriber(self.outbox_bytes)
        stats = self.channel.stats
        start = self.start
        catchup = None
        if start is None:
            self.channel.subscribe(subscriber, None)
        elif isinstance(start, Since) or self.channel.ring.uncovered(start):
            stats.resumes[Resume.SINCE if isinstance(start, Since) else Resume.KAFKA] += 1
            catchup = asyncio.create_task(self.catchups.resume(self.channel, subscriber, start))
        else:
            stats.resumes[Resume.RING] += 1
            self.channel.subscribe(subscriber, start)
        stats.streams_opened += 1
        writer = listener = expiry = None
        if self.expires_at is not None:
            expiry = asyncio.get_running_loop().call_later(
                self.expires_at - time.time(), subscriber.close, CloseReason.TOKEN_EXPIRED
            )
        try:
            await self._send(send, {"type": "http.response.start", "status": self.status_code, "headers": HEADERS})
            await self._send(send, {"type": "http.response.body", "body": self.preamble, "more_body": True})
            writer = asyncio.create_task(self._write(send, subscriber))
            listener = asyncio.create_task(_wait_for_disconnect(receive))
            await asyncio.wait((writer, listener, subscriber.closed), return_when=asyncio.FIRST_COMPLETED)
            if listener.done():
                subscriber.close(CloseReason.CLIENT_LEFT)
            elif writer.done() and not subscriber.closed.done():
                writer.result()  # the writer ends by itself only by failing: let that surface
        finally:
            # ERROR only if nothing closed it yet (a failure, a cancellation): no catch-up may join it to live
            reason = subscriber.close(CloseReason.ERROR)
            if expiry is not None:
                expiry.cancel()
            self.channel.unsubscribe(subscriber)
            for task in (writer, listener, catchup):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            stats.streams_closed[reason] += 1
        if reason is CloseReason.SLOW:
            raise SlowClientDisconnect
        if reason is CloseReason.TOKEN_EXPIRED:
            await self._send(send, {"type": "http.response.body", "body": TOKEN_EXPIRED, "more_body": False})
        elif reason in (CloseReason.SHUTDOWN, CloseReason.ERROR):
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send, subscriber: Subscriber) -> None:
        stats = self.channel.stats
        while (data := await subscriber.take(self.heartbeat)) is not None:
            await self._send(send, {"type": "http.response.body", "body": data or HEARTBEAT, "more_body": True})
            if data:
                stats.delivered_bytes += len(data)
            else:
                stats.heartbeats += 1

    async def _send(self, send: Send, message: Message) -> None:
        try:
            await send(message)
        except BaseException:
            # An OSError, or the writer cancelled mid-send: the hub cut a slow client stuck on a full TCP window.
            self.channel.stats.send_failures += 1
            raise


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
