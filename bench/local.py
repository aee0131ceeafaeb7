"""A local broker and the bridge serving one new topic, for benchmark scripts."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.processes import create_topic, start_bridge, stop
from bridge.kafka.local import LocalKafka, free_port

PARTITIONS = 3


@dataclass(frozen=True)
class Setup:
    kafka: LocalKafka
    bridge: subprocess.Popen[bytes]
    port: int
    topic: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def broker_and_bridge(label: str, flags: Sequence[str]) -> AsyncIterator[Setup]:
    """A broker, a topic ``bench-LABEL-…`` of ``PARTITIONS`` partitions and the bridge
    (``kafka-sse-bridge serve`` with ``flags``) serving it; all gone afterwards."""
    kafka = LocalKafka()
    await asyncio.to_thread(kafka.start)
    topic = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    log = Path(tempfile.mkstemp(prefix=f"bench-{label}-", suffix=".log")[1])
    bridge = None
    try:
        await asyncio.to_thread(create_topic, kafka.bootstrap_servers, topic, PARTITIONS)
        port = free_port()
        bridge = await asyncio.to_thread(start_bridge, kafka.bootstrap_servers, topic, port, log, flags)
        yield Setup(kafka, bridge.process, port, topic, log)
    finally:
        if bridge is not None:
            stop(bridge.process)
        kafka.remove()


async def paced(bootstrap_servers: str, rate: int, stop_at: float,
                send: Callable[[AIOKafkaProducer, int], Awaitable[object]]) -> int:  # fmt: skip
    """``send(producer, n)`` for n = 0, 1, … at ``rate`` a second until ``stop_at``; how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=10)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() < stop_at:
            due = int((time.monotonic() - started) * rate)
            for _ in range(due - sent):
                await send(producer, sent)
                sent += 1
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    return sent


def peak_rss_mb(pid: int) -> float:
    """The most memory the process has held so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0
