"""A local broker and the bridge serving one new topic, for benchmark scripts."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.catchup import PARTITIONS, start_bridge, stop_process, wait_for_bridge
from bridge.localkafka import LocalKafka, free_port


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
    port = free_port()
    bridge = None
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        await admin.close()
        bridge = start_bridge(kafka.bootstrap_servers, port, log, flags)
        await asyncio.to_thread(wait_for_bridge, bridge, f"http://127.0.0.1:{port}", topic, log)
        yield Setup(kafka, bridge, port, topic, log)
    finally:
        if bridge is not None:
            stop_process(bridge)
        kafka.remove()
