"""A cluster of Apache Kafka brokers on loopback, for the failover tests.

Every node is broker and controller (a combined KRaft quorum of all of them),
so three JVMs make a cluster that survives the loss of any one node, leaders
and controller alike. Topics get replication factor 3 and min.insync.replicas 2
by default: an ``acks=all`` write is acknowledged by two replicas at least, so
a leader killed after the ack cannot take the record with it.

Sized for a small machine: 512 MiB of heap and the serial collector each, and
the three formatted and started in parallel (a JVM starts in seconds; one
after the other would triple that).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bridge.kafka.local import KAFKA_VERSION, LocalKafka, Quorum, free_port


class LocalKafkaCluster:
    def __init__(self, size: int = 3, version: str = KAFKA_VERSION, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kafka-sse-bridge-cluster-"))
        quorum = Quorum({node: free_port() for node in range(1, size + 1)})
        self.nodes = [
            LocalKafka(self.workdir / f"node-{node}", version=version, node_id=node, quorum=quorum, heap="512m")
            for node in quorum.controller_ports
        ]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address, as a client is configured for a cluster."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        return next(node for node in self.nodes if node.node_id == node_id)

    def active_controller(self) -> int:
        """The node that leads the controller quorum now, as the running nodes
        last wrote it down (the KRaft quorum state: the newest epoch wins)."""
        states = [json.loads((node.workdir / "data" / "__cluster_metadata-0" / "quorum-state").read_text())
                  for node in self.nodes if node.process is not None]  # fmt: skip
        leader: int = max(states, key=lambda state: state["leaderEpoch"])["leaderId"]
        return leader

    def start(self, timeout: float = 90.0) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(LocalKafka.format, self.nodes))  # one JVM each: in parallel
        # Launched from this thread, not the pool's: a broker dies with the thread that started it.
        for node in self.nodes:
            node.launch()
        asyncio.run(self._wait_ready(timeout))

    async def _wait_ready(self, timeout: float) -> None:
        await asyncio.gather(*(node.wait_ready(timeout) for node in self.nodes))

    @contextmanager
    def running(self) -> Iterator[LocalKafkaCluster]:
        """Started for the ``with`` block, then removed (killed, its data deleted)."""
        try:
            self.start()
            yield self
        finally:
            self.remove()

    def remove(self) -> None:
        # The data is deleted next: a controlled shutdown (minutes, once the quorum is gone) would buy nothing.
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
