"""SIGTERM: the bridge stops accepting, ends its streams cleanly and spread
over --drain-seconds (no reconnect storm on the next replica), and exits
within a bound."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from bridge.server import GRACE_SECONDS

pytestmark = pytest.mark.kafka

DRAIN_SECONDS = 3.0
STREAMS = 30


async def open_raw_stream(port: int, topic: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def read_to_end(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    """When the server closed the stream, and its last bytes."""
    tail = b""
    while chunk := await reader.read(65536):
        tail = (tail + chunk)[-64:]
    return time.monotonic(), tail


async def test_sigterm_ends_streams_spread_over_the_drain_period(start_bridge: Callable[..., Any], topic: str) -> None:
    bridge = await start_bridge(drain_seconds=str(DRAIN_SECONDS))
    await bridge.wait_for_topic(topic, 3)
    connections = [await open_raw_stream(bridge.port, topic) for _ in range(STREAMS)]
    endings = [asyncio.create_task(read_to_end(reader)) for reader, _ in connections]
    signalled = time.monotonic()
    bridge.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    with pytest.raises(ConnectionRefusedError):  # no new connection once the drain began
        await asyncio.open_connection("127.0.0.1", bridge.port)
    ended = await asyncio.wait_for(asyncio.gather(*endings), DRAIN_SECONDS + GRACE_SECONDS)
    code = await asyncio.to_thread(bridge.process.wait, DRAIN_SECONDS + GRACE_SECONDS)
    exited = time.monotonic() - signalled
    for _, writer in connections:
        writer.close()
    assert code in (0, -signal.SIGTERM)  # uvicorn exits by raising the signal again
    # Each ended cleanly: the chunked body's last chunk, not a reset.
    assert all(tail.endswith(b"0\r\n\r\n") for _, tail in ended)
    offsets = sorted(at - signalled for at, _ in ended)
    assert offsets[0] < 1.0
    assert offsets[-1] > DRAIN_SECONDS * 0.7, offsets
    # Spread: any half second holds about a sixth of the endings (all of them without a drain).
    busiest = max(sum(start <= offset < start + 0.5 for offset in offsets) for start in offsets)
    assert busiest <= STREAMS // 3, offsets
    assert exited < DRAIN_SECONDS + GRACE_SECONDS
    print(f"stream endings from {offsets[0]:.2f} s to {offsets[-1]:.2f} s, busiest 0.5 s: {busiest}; "
          f"exit after {exited:.2f} s")  # fmt: skip
