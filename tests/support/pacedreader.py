"""An SSE client for load tests that reads as fast as it can or at a set pace, and checks order as it goes.

Each record's value names its partition and its number, ``{"p": 12, "n": 3340, ...}``,
numbers running up by the partition count within a partition (as ``numbered_burst``
produces them): the client checks each arrives exactly once and in order per
partition without keeping what it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import httpx
import orjson

# A receive buffer that fills soon (the kernel would grow it to megabytes for a
# reader that keeps up), above loopback's 64 KiB MSS so TCP itself does not stall.
RECEIVE_BUFFER = 256 * 1024


def numbered_burst(count: int, partitions: int, value_bytes: int) -> list[bytes]:
    """``count`` values, record i for partition i % partitions (cluster.produce's round robin)."""
    pad = "x" * max(0, value_bytes - 40)
    return [orjson.dumps({"p": i % partitions, "n": i, "pad": pad}) for i in range(count)]


class PacedReader:
    """One stream; ``rate`` bytes per second at most until ``unpace()``, None: as fast as it can."""

    def __init__(self, url: str, topic: str, partitions: int, rate: float | None = None) -> None:
        self.url, self.topic, self.partitions = url, topic, partitions
        self.rate = rate
        self.received = 0  # record events
        self.event_bytes = 0  # bytes of their data and id lines
        self.disorder: list[str] = []  # what arrived twice, out of order or not at all before a later one
        self.ended = False  # the server ended the stream
        self._next = list(range(partitions))  # per partition, the number expected next

    def unpace(self) -> None:
        self.rate = None

    async def run(self) -> None:
        transport = httpx.AsyncHTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)])
        with contextlib.suppress(httpx.RemoteProtocolError):  # the server dropped it (a client cut as slow)
            await self._read(transport)
        self.ended = True

    async def _read(self, transport: httpx.AsyncHTTPTransport) -> None:
        async with (
            httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", f"{self.url}/sse/{self.topic}") as response,
        ):
            response.raise_for_status()
            pending = b""
            started, taken = time.monotonic(), 0
            async for chunk in response.aiter_raw():  # what each read brings (with a size, httpx waits to fill it)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
                if self.rate is not None:
                    taken += len(chunk)
                    await asyncio.sleep(max(0.0, started + taken / self.rate - time.monotonic()))
                else:
                    started, taken = time.monotonic(), 0

    def _line(self, line: bytes) -> None:
        if line.startswith(b"id: "):
            self.event_bytes += len(line) + 1
        elif line.startswith(b"data: "):
            self.event_bytes += len(line) + 1
            value = orjson.loads(line[6:])
            partition, number = value["p"], value["n"]
            if number != self._next[partition]:
                self.disorder.append(f"partition {partition}: {number}, expected {self._next[partition]}")
            self._next[partition] = number + self.partitions
            self.received += 1
