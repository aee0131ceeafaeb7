"""uvicorn's httptools protocol with the bounds an always-open server needs.

- **Request heads are bounded.** httptools (llhttp) has no limit of its own on
  the request line or headers, and uvicorn's ``on_url``/``on_header`` keep
  appending what arrives (uvicorn's ``h11_max_incomplete_event_size`` exists
  only for h11): a client could grow one request's head without end. A head
  (request line, query and headers) over ``MAX_HEAD_BYTES`` is answered
  ``431`` and the connection closed.
- **Malformed requests get the bridge's JSON error** instead of uvicorn's plain
  text: ``400 {"error": "bad_http_request", ...}``.
- **A stream hears of its lost connection without a task of its own.**
  After a disconnect uvicorn's ``send`` returns silently and only ``receive``
  tells, so each stream would keep a task waiting in ``receive()``. Instead
  the protocol offers, as the ASGI scope extension ``CONNECTION_LOST``, a
  future done when the connection is lost (one per connection, shared by its
  requests) that the stream awaits beside its writer.
- **Idle connections stay light.** uvicorn gives each connection a deque for
  pipelined requests and each request an ``asyncio.Event`` (with a deque of
  its own) for ``receive()``, and its flow control one more event for
  ``drain``; deques are the heaviest small objects in CPython, about 3 KiB
  of those three per idle stream. A deque is made only for a request that
  arrives pipelined, and both events are ``MessageEvent``, which holds at
  most one future.
- **A stream sheds the framework once it has started.** The app's middleware,
  exception wrappers and route stay suspended, with the request, the solved
  dependencies and FastAPI's exit stacks, for as long as their response
  runs: for an SSE stream, hours, and more than half of an idle stream's
  memory. The protocol offers every request an ``Adoption`` (scope extension
  ``ADOPT``): a response that has sent its start through the framework may
  hand it the rest of itself and return; the app unwinds, and the protocol
  runs the rest in the request's task with uvicorn's own ``send``. uvicorn's
  handling of the app's errors applies to the rest as well (logged, the
  connection closed), and a middleware that must see the response end (the
  stream limits) defers a callback to it. The app runs on a copy of the
  scope, so what it adds there (the route, FastAPI's exit stacks) goes with it.
- **How much a client has yet to take** is in every request's scope
  (``extensions["bridge.connection"]``, http/stall.py): the stream's stall watch
  reads it to tell a client that reads slowly from one that reads nothing,
  and aborts the connection of one cut for it (a close would keep its
  buffers until the client reads them, which it does not).
- **A live batch is written from the publish.** The same extension's
  ``write`` writes a chunk of the response body at once, as uvicorn's
  ``send`` would, when the connection can take it without waiting (not
  paused, not closing, the response under way): fanout/outbox.py writes a
  batch to every idle live stream in one pass instead of waking each
  stream's writer task.
- **Peers that vanish are found.** A browser whose machine or network went
  away sends no FIN: writes to it are buffered by the kernel and retransmitted
  for about 15 minutes (``tcp_retries2``). With ``TCP_USER_TIMEOUT`` the
  kernel gives up once written data stays unacknowledged for
  ``UNACKED_SECONDS``; heartbeats guarantee there is data in flight, so such a
  stream ends within ``--heartbeat`` plus that bound. Set on the listening
  socket, the option is inherited by every accepted one.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from bridge.http.stall import CONNECTION_EXTENSION, unsent_bytes

MAX_HEAD_BYTES = 16 * 1024
UNACKED_SECONDS = 30.0
# scope["extensions"][CONNECTION_LOST]["future"], the connection's (shared by its requests): wait
# for it with asyncio.wait or shield, since cancelling an await of it would cancel it for all.
CONNECTION_LOST = "kafka_sse_bridge.connection_lost"
ADOPT = "kafka_sse_bridge.adopt"  # scope["extensions"][ADOPT]: the request's Adoption


def _json_response(status_line: bytes, error: str, message: str) -> bytes:
    body = orjson.dumps({"error": error, "message": message})
    head = [status_line, b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class MessageEvent:
    """What uvicorn's request cycle and flow control use of an ``asyncio.Event``
    (set, clear, is_set, wait), without its deque: one future, shared by its waiters."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> bool:
        if not self._flag:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            # Shielded: cancelling one waiter (Starlette's disconnect probe does) must not cancel the others'.
            await asyncio.shield(self._waiter)
        return True


def chunk_writer(cycle: RequestResponseCycle) -> Callable[[bytes], bool]:
    """Writes a chunk of ``cycle``'s chunked response body now, framed as its
    ``send`` frames one, if the connection can take it without waiting; False,
    writing nothing, if not (the caller then sends it the ASGI way)."""
    transport, flow = cycle.transport, cycle.flow

    def write(body: bytes) -> bool:
        if (flow.write_paused or cycle.disconnected or cycle.response_complete or not cycle.chunked_encoding
                or transport.is_closing()):  # fmt: skip
            return False
        try:
            transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))  # no copy of the body into one buffer
        except (OSError, RuntimeError):  # the connection broke meanwhile: the publish that called must go on
            return False
        return True

    return write


class Adoption:
    """Takes over the rest of a response whose app returns: ``adopt(rest)``,
    and the protocol awaits ``rest(send)`` with the server's ``send`` once the
    app has returned. One per request, offered as ``scope["extensions"][ADOPT]``."""

    __slots__ = ("_deferred", "rest")

    def __init__(self) -> None:
        self.rest: Callable[[Send], Awaitable[None]] | None = None
        self._deferred: tuple[Callable[[], object], ...] = ()

    def adopt(self, rest: Callable[[Send], Awaitable[None]]) -> None:
        self.rest = rest

    def defer(self, callback: Callable[[], object]) -> bool:
        """Call ``callback`` once the adopted rest ended, if one was adopted; whether one was."""
        if self.rest is None:
            return False
        self._deferred += (callback,)
        return True

    async def run(self, send: Send) -> None:
        rest, self.rest = self.rest, None  # a keep-alive connection's scope outlives the response
        try:
            if rest is not None:
                await rest(send)
        finally:
            for callback in reversed(self._deferred):  # the innermost middleware's first, as its finally would be
                callback()


def scope_adoption(scope: Scope) -> Adoption | None:
    """The request's Adoption, if its server offers one."""
    adoption: Adoption | None = scope.get("extensions", {}).get(ADOPT)
    return adoption


def defer_to_adopted(scope: Scope, callback: Callable[[], object]) -> bool:
    """Call ``callback`` when the response's adopted rest ends, if the response handed one over; whether it did."""
    adoption = scope_adoption(scope)
    return adoption is not None and adoption.defer(callback)


async def _run_adopting(app: ASGIApp, transport: asyncio.Transport, scope: Scope, receive: Receive,
                        send: Send) -> None:  # fmt: skip
    """The app, then the rest of its response if it handed one over."""
    adoption = Adoption()
    scope["extensions"][ADOPT] = adoption
    try:
        await app(dict(scope), receive, send)
    except BaseException:
        if adoption.rest is not None:  # failed after handing over: the rest is only ended, the connection dropped
            transport.abort()
            await adoption.run(send)
        raise
    await adoption.run(send)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # The base class keeps its state in a __dict__; ours, at least, takes no entries there.
    __slots__ = ("_head_bytes", "_lost", "_reading_head")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_bytes, self._reading_head = 0, True
        self._lost: asyncio.Future[None] = self.loop.create_future()
        self.pipeline = ()  # type: ignore[assignment]  # falsy and shared: a deque once a request is pipelined
        super().connection_made(transport)
        self.flow._is_writable_event = writable = MessageEvent()  # type: ignore[assignment]
        writable.set()  # as FlowControl starts it: writable

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._lost.done():
            self._lost.set_result(None)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope.setdefault("extensions", {})[CONNECTION_LOST] = {"future": self._lost}

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                message = f"request line and headers are limited to {MAX_HEAD_BYTES} bytes"
                self.transport.write(_json_response(b"HTTP/1.1 431 Request Header Fields Too Large",
                                                    "request_too_large", message))  # fmt: skip
                self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        before = self.cycle
        if before is not None and not before.response_complete and not self.pipeline:
            self.pipeline = deque()  # this request came while the last one is answered: uvicorn queues it
        extension: dict[object, object] = {"unsent": unsent_bytes(self.transport), "abort": self.transport.abort}
        self.scope.setdefault("extensions", {})[CONNECTION_EXTENSION] = extension
        super().on_headers_complete()
        if self.cycle is not before:  # a new request (not an upgrade): its cycle's event, before anyone waits
            self.cycle.message_event = MessageEvent()  # type: ignore[assignment]
            extension["write"] = chunk_writer(self.cycle)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn's scope types are TypedDicts, Starlette's (the app's) mappings: the same dicts
        super()._start_asgi_task(cycle, functools.partial(_run_adopting, cast(ASGIApp, app), self.transport))

    def on_message_complete(self) -> None:
        self._reading_head, self._head_bytes = True, 0  # a keep-alive connection's next request
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_json_response(b"HTTP/1.1 400 Bad Request", "bad_http_request", msg))
        self.transport.close()


def listening_socket(
    host: str, port: int, *, reuse_port: bool = False, unacked_seconds: float = UNACKED_SECONDS
) -> socket.socket:
    """The server's socket, bound, with the options every connection inherits;
    ``reuse_port``: other processes (bridge/workers.py) may bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(unacked_seconds * 1000))
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
