"""One HTML page served from its own loopback origin: the "other site" whose
page subscribes to the bridge across origins."""

from __future__ import annotations

import asyncio

from bridge.kafka.local import free_port

HOST = "127.0.0.1"


class PageServer:
    def __init__(self, html: str) -> None:
        self._html = html.encode()
        self.port = free_port()
        self._server: asyncio.Server | None = None

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, HOST, self.port)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the browser only GETs here: the head is the whole request
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(self._html)}\r\n"
                "Connection: close\r\n\r\n")  # fmt: skip
        writer.write(head.encode() + self._html)
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
