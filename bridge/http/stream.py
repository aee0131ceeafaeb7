"""One SSE connection, as an ASGI response.

A connection has one small task beside the one uvicorn runs the response
in, its writer: it takes whatever the subscriber's outbox holds and writes it
in one ``send``, or a heartbeat comment after ``heartbeat`` idle seconds.
While it waits, a live batch is written to the connection from the publish
itself when the connection can take it at once (protocol.py's ``write``,
fanout/outbox.py), the writer left asleep. The
response waits for the first of: the writer failing, the subscriber closed,
or the client gone. That last is a future the bridge's protocol offers in the
scope (protocol.CONNECTION_LOST), so no task waits in ``receive()`` for
``http.disconnect`` (after a disconnect uvicorn's ``send`` returns silently,
only ``receive`` tells); under another server a listener task does.

Under the bridge's protocol the response sends its start and preamble
through the framework's ``send`` (its middleware sees the response start),
then hands the rest of itself to the protocol (protocol.ADOPT) and returns:
every middleware and route frame above it, the request and FastAPI's exit
stacks are freed for the hours the stream lasts, and the rest writes with
uvicorn's own ``send``. Under another server it runs on inside the app.

A client that resumes from further back than the ring has a third task, its
catch-up, until it is back in its view; so has one that fell behind the live
path further than the ring reaches (fanout/behind.py), each time it does.

A stream serves a view (views.py): one or several topics, a filter, a format.
On a filtered stream a heartbeat also carries the stream's id, so the
client's last id moves past the records the filter skipped.

A stall watch (stall.py) closes the subscriber as slow once the client has
taken no bytes for ``--stalled-client-seconds`` while some waited for it (the
writer may be stuck in ``send`` on a full TCP window, so it is cancelled and
the connection dropped); a client that reads slowly is fed at its pace and
never cut. The hub may close it for a shutdown, a failed catch-up too
(the stream ends cleanly and the browser reconnects). So does a timer when the
client's token expires: a ``reauth`` event, then the stream ends cleanly; and
the hub when a topic of the stream is deleted: a ``deleted`` event, then the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from bridge.fanout.channel import Resume
from bridge.fanout.outbox import CloseReason, Cursor, Subscriber
from bridge.fanout.views import View
from bridge.http.protocol import CONNECTION_LOST, scope_adoption
from bridge.http.stall import StallWatch, scope_abort, scope_unsent, scope_write
from bridge.kafka.catchup import CatchUps, Since
from bridge.wire import sse
from bridge.wire.events import deleted_event, reauth_event

HEARTBEAT = sse.format_comment()
TOKEN_EXPIRED = reauth_event(CloseReason.TOKEN_EXPIRED.value)
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SlowClientDisconnect(Exception):
    """Raised to make the server drop a connection whose client stopped taking
    bytes; uvicorn closes the transport, and ``server`` keeps it out of the
    error log."""


class EventStream(Response):
    """Not a body to render but a live stream; a Response subclass only so the
    framework hands it the connection as it is."""

    media_type = "text/event-stream"

    def __init__(self, view: View, start: Cursor | Since | None, catchups: CatchUps, *,
                 outbox_bytes: int, heartbeat: float, retry_ms: int, stalled_client_seconds: float,
                 expires_at: float | None = None, notices: Sequence[bytes] = (),
                 on_close: Callable[[], None] = lambda: None) -> None:  # fmt: skip
        self.status_code = 200
        self.background = None
        self.view = view
        self.notices = notices  # control events the stream opens with (View.reconcile)
        # Bytes, heartbeats and send failures of a stream over several topics
        # are counted under its first topic: one write carries all of them.
        self.stats = view.channels[0].stats
        self.start = start
        self.catchups = catchups
        self.outbox_bytes = outbox_bytes
        self.heartbeat = heartbeat
        self.stalled_client_seconds = stalled_client_seconds
        # What the stream holds once open (_open), let go of at its end (_end)
        self._subscriber: Subscriber
        self._watch: StallWatch
        self._lost: asyncio.Future[None]
        self._expiry: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._catching_up: set[asyncio.Task[None]] = set()
        self.expires_at = expires_at  # epoch seconds: the client's token ends then
        self.on_close = on_close  # after the stream has left its view: its topics are watched one stream less
        self.preamble = sse.format_retry(retry_ms) + sse.format_comment("kafka-sse-bridge")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._open(scope, receive)
        try:
            # Through the framework's send: its middleware (CORS) sees the response start.
            await self._send(send, {"type": "http.response.start", "status": self.status_code, "headers": HEADERS})
            await self._send(send, {"type": "http.response.body", "body": self.preamble, "more_body": True})
        except BaseException:
            await self._end()
            raise
        write = scope_write(scope)
        if write is not None:  # only now: nothing may be written before the response start
            self._subscriber.write_now = self._counted(write)
        adoption = scope_adoption(scope)
        if adoption is None:
            await self._run(scope_abort(scope), send)
        else:  # the rest with the server's send: every frame above this one unwinds (protocol.py)
            # Not the scope: the app's (the route, the request's exit stacks) would live on with it
            adoption.adopt(functools.partial(self._run, scope_abort(scope)))

    def _open(self, scope: Scope, receive: Receive) -> None:
        self._subscriber = subscriber = Subscriber(self.outbox_bytes)
        subscriber.push_backlog(self.notices)
        view, start = self.view, self.start
        catching_up = self._catching_up

        def catch_up(start: Cursor | Since) -> None:
            task = self.catchups.start(view, subscriber, start)
            catching_up.add(task)
            task.add_done_callback(catching_up.discard)

        subscriber.catch_up = catch_up  # each time it falls behind further than the rings reach
        self._watch = StallWatch(self.stalled_client_seconds, scope_unsent(scope),
                                 functools.partial(subscriber.close, CloseReason.SLOW))  # fmt: skip
        resume: Resume | None = None
        if start is None:
            view.subscribe(subscriber, None)
        elif not isinstance(start, Since) and view.replayable(start):
            resume = Resume.RING
            view.subscribe(subscriber, start)
        else:
            resume = Resume.SINCE if isinstance(start, Since) else Resume.KAFKA
            catch_up(start)
        for channel in view.channels:
            channel.stats.streams_opened += 1
            if resume is not None:
                channel.stats.resumes[resume] += 1
        self._lost = _connection_lost(scope, receive)
        if self.expires_at is not None:
            self._expiry = asyncio.get_running_loop().call_later(
                self.expires_at - time.time(), subscriber.close, CloseReason.TOKEN_EXPIRED
            )

    async def _run(self, abort: Callable[[], None] | None, send: Send) -> None:
        subscriber, lost, view = self._subscriber, self._lost, self.view
        try:
            self._writer = writer = asyncio.create_task(self._write(send, subscriber))
            await asyncio.wait((writer, lost, subscriber.closed), return_when=asyncio.FIRST_COMPLETED)
            if lost.done():
                subscriber.close(CloseReason.CLIENT_LEFT)
            elif writer.done() and not subscriber.closed.done():
                writer.result()  # the writer ends by itself only by failing: let that surface
        finally:
            reason = await self._end()
        if reason is CloseReason.SLOW:
            # Aborted, not closed: a close keeps the buffers until the client reads them, and a client
            # that took nothing for the bound does not; it resumes from the last id it did read.
            if abort is not None:
                abort()
            raise SlowClientDisconnect
        if reason is CloseReason.TOKEN_EXPIRED:
            await self._send(send, {"type": "http.response.body", "body": TOKEN_EXPIRED, "more_body": False})
        elif reason is CloseReason.TOPIC_DELETED:
            body = b"".join(deleted_event(channel.topic) for channel in view.channels if channel.deleted)
            await self._send(send, {"type": "http.response.body", "body": body, "more_body": False})
        elif reason in (CloseReason.SHUTDOWN, CloseReason.ERROR):
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def _end(self) -> CloseReason:
        """Lets go of everything the stream holds, whatever ended it; the reason it closed for."""
        subscriber, lost = self._subscriber, self._lost
        # ERROR only if nothing closed it yet (a failure, a cancellation): no catch-up may join it to live
        reason = subscriber.close(CloseReason.ERROR)
        if self._expiry is not None:
            self._expiry.cancel()
        self._watch.stop()
        self.view.unsubscribe(subscriber)
        listener = lost if isinstance(lost, asyncio.Task) else None  # the protocol's future is the connection's
        for task in (self._writer, listener, *self._catching_up):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for channel in self.view.channels:
            channel.stats.streams_closed[reason] += 1
        self.on_close()
        return reason

    async def _write(self, send: Send, subscriber: Subscriber) -> None:
        stats = self.stats
        while (data := await subscriber.take(self.heartbeat)) is not None:
            body = data or self._heartbeat(subscriber)
            await self._send(send, {"type": "http.response.body", "body": body, "more_body": True})
            if data:
                stats.delivered_bytes += len(data)
            else:
                stats.heartbeats += 1

    def _counted(self, write: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
        """``write``, its bytes counted as the writer's are."""
        stats, watch = self.stats, self._watch

        def write_now(data: bytes) -> bool:
            if not write(data):
                return False
            stats.delivered_bytes += len(data)
            watch.wrote(len(data))
            return True

        return write_now

    @staticmethod
    def _heartbeat(subscriber: Subscriber) -> bytes:
        if subscriber.live_id is None:
            return HEARTBEAT
        # Taken with nothing queued: exactly what the client has been handed, skipped records included.
        return HEARTBEAT + sse.format_id(subscriber.live_id())

    async def _send(self, send: Send, message: Message) -> None:
        watch = self._watch
        try:
            watch.before_send()
            await send(message)
            watch.after_send(len(message.get("body", b"")))
        except BaseException:
            # An OSError, or the writer cancelled mid-send: the hub cut a slow client stuck on a full TCP window.
            self.stats.send_failures += 1
            raise


def _connection_lost(scope: Scope, receive: Receive) -> asyncio.Future[None]:
    """Done once the client is gone: the protocol's future, or else a task listening for ``http.disconnect``."""
    offered = scope.get("extensions", {}).get(CONNECTION_LOST)
    if offered is not None:
        lost: asyncio.Future[None] = offered["future"]
        return lost
    return asyncio.create_task(_wait_for_disconnect(receive))


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
