"""HTTP/1.1 over a plain socket, for requests no HTTP client library would send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


async def exchange(port: int, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send ``request`` as it is and read one response head and its
    ``content-length`` body (or until the server closes; nothing of a stream)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if headers.get("content-type") == "text/event-stream" or request.startswith(b"HEAD "):
                body = b""  # a stream does not end, its head is the answer; a HEAD answer has no body
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            else:
                body = await reader.read()
        return RawResponse(int(status_line.split(" ")[1]), headers, body)
    finally:
        writer.close()


def get(path: str | bytes, *headers: str | bytes, method: str | bytes = b"GET") -> bytes:
    """A request for ``path`` with the given header lines, closing the connection after it."""

    def raw(text: str | bytes) -> bytes:
        return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text

    request_line = raw(method) + b" " + raw(path) + b" HTTP/1.1"
    lines = [request_line, b"Host: 127.0.0.1", *map(raw, headers), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"
