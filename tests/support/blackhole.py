"""A TCP proxy on loopback that can make its connections go silent.

``blackhole()`` makes every connection open at that moment drop what it
reads and stop reading, in both directions, while both sockets stay open: no
FIN, no RST, no error on either side, only silence — as when a NAT or
firewall entry is lost, or a peer hangs. Connections made afterwards are
forwarded as usual, as a new NAT entry would be.
"""

from __future__ import annotations

import asyncio
import contextlib

HOST = "127.0.0.1"
READ_SIZE = 65536


class _Connection:
    def __init__(self) -> None:
        self.silenced = False
        self.tasks: list[asyncio.Task[None]] = []


class BlackholeProxy:
    def __init__(self, upstream_port: int = 0) -> None:
        self.upstream_port = upstream_port  # may be set after start(), before the first connection
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in tuple(self._connections):
            for task in connection.tasks:
                task.cancel()
        for writer in tuple(self._writers):
            writer.close()

    def blackhole(self) -> int:
        """Silence every open connection; how many there were."""
        for connection in self._connections:
            connection.silenced = True
        return len(self._connections)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        connection = _Connection()
        self._writers.add(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            client_writer.close()
            return
        self._writers.add(upstream_writer)
        self._connections.add(connection)
        connection.tasks = [
            asyncio.create_task(self._pump(connection, client_reader, upstream_writer)),
            asyncio.create_task(self._pump(connection, upstream_reader, client_writer)),
        ]
        try:
            await asyncio.wait(connection.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in connection.tasks:
                task.cancel()
            self._connections.discard(connection)
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                writer.close()

    async def _pump(self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(READ_SIZE):
                if connection.silenced:
                    await asyncio.Event().wait()  # read no more: the sender's window fills, nothing is said
                writer.write(chunk)
                await writer.drain()
