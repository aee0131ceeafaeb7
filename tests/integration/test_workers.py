"""``--workers N``: N processes on one port, each its own consumer; the kernel
spreads connections over them and every one serves every record."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.wire import cursor as cursors
from tests.support.bridgeproc import BridgeProcess, open_stream
from tests.support.cluster import Cluster

pytestmark = pytest.mark.kafka

STREAMS = 16  # all on one of two workers by chance: 2 in 65,536
LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def sockets_on(pid: int, port: int, state: str) -> int:
    """TCP sockets of process ``pid`` on local ``port`` in ``state`` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = fd.readlink().name if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, inode = int(fields[1].split(":")[1], 16), fields[9]
        count += local_port == port and fields[3] == state and inode in inodes
    return count


async def listening_workers(bridge: BridgeProcess, count: int, timeout: float = 15.0) -> list[int]:
    """The workers: the children listening on the port (multiprocessing has a helper process too), once
    ``count`` of them listen. /readyz answers as soon as one worker is ready, the others may still be starting."""
    assert bridge.process is not None
    deadline = time.monotonic() + timeout
    while True:
        workers = [child for child in children(bridge.process.pid) if sockets_on(child, bridge.port, LISTEN)]
        if len(workers) >= count or time.monotonic() > deadline:
            return workers
        await asyncio.sleep(0.1)


async def every_worker_serves(bridge: BridgeProcess, topic: str, timeout: float = 15.0) -> None:
    """Until ten fresh connections in a row (each to any worker) find ``topic`` served."""
    deadline, in_a_row = time.monotonic() + timeout, 0
    while in_a_row < 10:
        assert time.monotonic() < deadline, f"not every worker serves {topic}"
        async with httpx.AsyncClient(base_url=bridge.url) as client:
            served = {entry["topic"] for entry in (await client.get("/topics")).json()["topics"]}
        in_a_row = in_a_row + 1 if topic in served else 0
        if topic not in served:
            await asyncio.sleep(0.1)


async def test_workers_share_the_port_and_each_serves_every_record(
    start_bridge: Callable[..., Any], cluster: Cluster, topic: str
) -> None:
    bridge: BridgeProcess = await start_bridge(workers="2")
    assert bridge.process is not None
    workers = await listening_workers(bridge, 2)
    assert len(workers) == 2, bridge.log()
    await every_worker_serves(bridge, topic)
    async with AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(open_stream(bridge.url, topic)) for _ in range(STREAMS)]
        spread = [sockets_on(worker, bridge.port, ESTABLISHED) for worker in workers]
        assert sum(spread) == STREAMS
        assert all(spread), f"the kernel gave every stream to one worker: {spread}"
        sent = await cluster.produce(topic, [b"%d" % n for n in range(30)])
        ends = [0, 0, 0]
        for partition, offset in sent:
            ends[partition] = max(ends[partition], offset + 1)
        for stream in streams:
            events = await stream.events(len(sent))
            assert sorted(int(event.data) for event in events) == list(range(30))
            assert cursors.parse(events[-1].id) == tuple(ends)  # the same cursors in every worker
    assert bridge.stop() == -signal.SIGTERM  # as a single process ends: drained, then the signal raised again
    assert not children(bridge.process.pid), "a worker outlived the bridge"


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_every_listening_socket_has_the_configured_backlog(
    start_bridge: Callable[..., Any], workers: str
) -> None:
    bridge: BridgeProcess = await start_bridge(workers=workers, backlog="123")
    await listening_workers(bridge, int(workers))
    # ss reads a listening socket's backlog in its Send-Q column (inet_diag's wqueue)
    ss = await asyncio.create_subprocess_exec("ss", "-ltnH", f"sport = :{bridge.port}", stdout=asyncio.subprocess.PIPE)
    listing = (await ss.communicate())[0].decode()
    assert ss.returncode == 0
    backlogs = [int(line.split()[2]) for line in listing.splitlines()]
    assert backlogs == [123] * int(workers), listing
