"""A hundred clients that stop reading (their TCP windows full) are cut once
they have taken nothing for the stall bound, while fast clients get every
record, and the bridge's memory stays within what the bounds allow."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.support.bridgeproc import BridgeProcess, open_stream, rss_mb
from tests.support.scrape import scrape

pytestmark = pytest.mark.kafka

STUCK = 100
FAST = 3
OUTBOX_BYTES = 256 * 1024
ROUND_RECORDS = 400
VALUE_BYTES = 4000
MAX_ROUNDS = 40  # 64 MB at most
STALLED_SECONDS = 2


async def stuck_client(port: int, topic: str) -> socket.socket:
    """A connection that asks for the stream and never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)  # a window that fills soon, above the MSS
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await asyncio.get_running_loop().sock_sendall(sock, f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


async def slow_closed(bridge: BridgeProcess, topic: str) -> int:
    return int((await scrape(bridge)).value("streams_closed_total", topic=topic, reason="slow") or 0)


async def test_stuck_clients_are_cut_fast_ones_get_everything_memory_stays_bounded(
    start_bridge: Callable[..., Any], cluster: Any, topic: str
) -> None:
    bridge = await start_bridge(outbox_bytes=str(OUTBOX_BYTES), ring_records="200", max_connections_per_ip="1000",
                                stalled_client_seconds=str(STALLED_SECONDS))  # fmt: skip
    await bridge.wait_for_topic(topic, 3)
    assert bridge.process is not None
    pid = bridge.process.pid
    stuck = [await stuck_client(bridge.port, topic) for _ in range(STUCK)]
    rss_before = rss_mb(pid)
    sent: list[bytes] = []
    async with open_stream(bridge.url, topic) as first, open_stream(bridge.url, topic) as second, \
            open_stream(bridge.url, topic) as third:  # fmt: skip
        rounds = 0
        while rounds < MAX_ROUNDS:
            rounds += 1
            values = [orjson.dumps({"n": len(sent) + n, "pad": "z" * VALUE_BYTES}) for n in range(ROUND_RECORDS)]
            await cluster.produce(topic, values)
            sent += values
            if await slow_closed(bridge, topic) == STUCK:
                break
        received = [await fast.events(len(sent), timeout=60) for fast in (first, second, third)]
    cut = await slow_closed(bridge, topic)
    peak_growth = rss_mb(pid, "VmHWM") - rss_before
    for sock in stuck:
        sock.close()
    expected = sorted(value.decode() for value in sent)
    for events in received:
        assert sorted(event.data for event in events) == expected
        assert len({event.id for event in events}) == len(sent)
    assert cut == STUCK, f"{cut} of {STUCK} stuck clients cut after {rounds} rounds"
    # Bounded by the outbox bound, not by what was sent: per stuck client its outbox, the piece its
    # writer holds and that piece in the server's write buffer, each at most OUTBOX_BYTES (without
    # the bound on writes, a whole batch sat in the write buffer of every stuck client: 168 MB here).
    sent_mb = len(sent) * VALUE_BYTES / 2**20
    bound_mb = STUCK * 3 * OUTBOX_BYTES / 2**20 + 40  # + the allocator's slack
    print(f"{len(sent)} records ({sent_mb:.0f} MB) in {rounds} rounds; RSS grew by {peak_growth:.0f} MB at peak")
    assert peak_growth < bound_mb, f"RSS grew by {peak_growth:.0f} MB while {sent_mb:.0f} MB went through"
