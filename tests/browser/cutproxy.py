"""A TCP proxy on loopback that stands between a browser and the bridge and
that a test can cut, as a load balancer or a flaky network would.

Bytes are forwarded as they arrive, in both directions, never buffered: the
browser sees the bridge's stream exactly as the bridge writes it. The proxy
notes the head of every HTTP request it forwards (the browser only sends GETs
here, so a request is its head and nothing more), which tells the test what
the browser asked for and with which ``Last-Event-ID``.

It also keeps the bytes it forwarded to the browser, so a test can wait until
the browser has been sent something (an id-only frame, which fires no event
the page could show).

``cut()`` closes every forwarded connection on both sides; ``hold()`` keeps new
connections waiting (their request read and noted, not yet forwarded) until
``release()``, so the test decides when a reconnecting browser gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

HOST = "127.0.0.1"
READ_SIZE = 65536


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # names in lower case


def parse_head(head: bytes) -> Request:
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return Request(method, target, headers)


class CuttableProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._port = 0
        self._released = asyncio.Event()
        self._released.set()
        self._new_request = asyncio.Event()
        self.delivered = bytearray()  # every byte forwarded to clients, chunked coding included
        self._new_bytes = asyncio.Event()
        self._connections: set[asyncio.Task[None]] = set()  # every accepted connection
        self._forwarding: set[asyncio.Task[None]] = set()  # those connected to the bridge

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await _cancel_all(self._connections)

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def cut(self) -> int:
        """Close every connection being forwarded, on both sides; how many there were."""
        cut = list(self._forwarding)
        await _cancel_all(cut)
        return len(cut)

    def requests_for(self, prefix: str) -> list[Request]:
        return [request for request in self.requests if request.target.startswith(prefix)]

    async def wait_for_requests(self, prefix: str, count: int, timeout: float = 15.0) -> list[Request]:
        """Until ``count`` requests for targets starting with ``prefix`` have been read."""
        deadline = time.monotonic() + timeout
        while len(found := self.requests_for(prefix)) < count:
            self._new_request.clear()
            try:
                await asyncio.wait_for(self._new_request.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise TimeoutError(f"{len(found)} of {count} requests for {prefix!r} in {timeout} s") from None
        return found

    async def wait_for_delivered(self, wanted: bytes, timeout: float = 15.0) -> None:
        """Until ``wanted`` has been forwarded to a client."""
        async with asyncio.timeout(timeout):
            while wanted not in self.delivered:
                self._new_bytes.clear()
                await self._new_bytes.wait()

    def _note(self, head: bytes) -> None:
        self.requests.append(parse_head(head))
        self._new_request.set()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")  # the client speaks first
            self._note(head)
            await self._released.wait()
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.upstream_port)
            upstream_writer.write(head)
            self._forwarding.add(task)
            pumps = [
                asyncio.create_task(self._pump(client_reader, upstream_writer, note_requests=True)),
                asyncio.create_task(self._pump(upstream_reader, client_writer, note_requests=False)),
            ]
            try:  # either side closing ends the connection
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _cancel_all(pumps)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            self._forwarding.discard(task)
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, note_requests: bool) -> None:
        pending = b""
        while chunk := await reader.read(READ_SIZE):
            writer.write(chunk)
            await writer.drain()
            if not note_requests:
                self.delivered += chunk
                self._new_bytes.set()
            else:
                pending += chunk
                while (end := pending.find(b"\r\n\r\n")) != -1:
                    self._note(pending[: end + 4])
                    pending = pending[end + 4 :]


async def _cancel_all(tasks: list[asyncio.Task[None]] | set[asyncio.Task[None]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    # the tasks end by cancellation or by a connection error: neither is news here
    await asyncio.gather(*pending, return_exceptions=True)
