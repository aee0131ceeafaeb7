"""Reading Kafka: one consumer per process, manual assignment, no consumer group.

The bridge's position in each partition lives in the hub's channels (the next
offset after the last record published), not in Kafka: there is nothing to
commit, and every (re)assignment seeks each known partition back to exactly
that offset. At start every served topic begins at its live end; partitions
and topics that appear later begin at their first offset, since every record
in them is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bridge.config import Settings
from bridge.hub import Hub

logger = logging.getLogger("bridge.source")

# The broker answers a fetch as soon as it has data, or after this long;
# aiokafka's default (500 ms) would be the floor of a quiet topic's latency.
FETCH_MAX_WAIT_MS = 100
POLL_TIMEOUT_MS = 200
RETRY_SECONDS = 1.0


class KafkaSource:
    def __init__(self, settings: Settings, hub: Hub) -> None:
        self._settings = settings
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        self.assigned = False  # the first discovery is done: served topics are known
        self.reachable = False  # the last metadata request was answered

    @property
    def ready(self) -> bool:
        return self.assigned and self.reachable

    def start(self) -> None:
        """Begin reading in a background task; aiokafka's clients must be made
        on the running loop."""
        servers = ",".join(self._settings.bootstrap_servers)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )  # fmt: skip
        self._admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        self._task = asyncio.create_task(self._run(), name="kafka-source")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
        await self._admin.close()

    async def _run(self) -> None:
        await self._connect()
        next_refresh = time.monotonic() + self._settings.metadata_interval
        while True:
            if time.monotonic() >= next_refresh:
                await self._refresh()
                next_refresh = time.monotonic() + self._settings.metadata_interval
            batch = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            by_topic: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
            for partition, records in batch.items():
                by_topic[partition.topic].extend(records)
            for topic, records in by_topic.items():
                self._hub.channels[topic].publish(records)

    async def _connect(self) -> None:
        """Start the clients and make the first assignment, retrying while
        Kafka cannot be reached (the bridge may start before the broker)."""
        while True:
            try:
                await self._admin.start()
                await self._consumer.start()
                await self._refresh()
            except KafkaError as error:
                logger.warning("Kafka at %s not reachable yet: %s", ",".join(self._settings.bootstrap_servers), error)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if self.assigned:
                return
            await asyncio.sleep(RETRY_SECONDS)

    async def _refresh(self) -> None:
        try:
            topics = await self._admin.describe_topics()
        except KafkaError as error:
            if self.reachable:
                logger.warning("Kafka metadata request failed: %s", error)
            self.reachable = False
            return
        self.reachable = True
        counts = {
            topic["topic"]: len(topic["partitions"])
            for topic in topics
            if topic["error_code"] == 0 and self._settings.serves(topic["topic"])
        }
        await self._assign(counts)
        self.assigned = True

    async def _assign(self, partition_counts: dict[str, int]) -> None:
        """Assign every partition of every served topic, keeping the exact
        position of those already read, starting new ones where they belong."""
        fresh: list[TopicPartition] = []
        for topic, count in partition_counts.items():
            channel = self._hub.channels.get(topic)
            known = len(channel.position) if channel else 0
            fresh.extend(TopicPartition(topic, partition) for partition in range(known, count))
        if not fresh:
            return
        consumer = self._consumer
        consumer.assign([*consumer.assignment(), *fresh])
        for topic, channel in self._hub.channels.items():
            for partition, offset in enumerate(channel.position):
                consumer.seek(TopicPartition(topic, partition), offset)
        if self.assigned:
            await consumer.seek_to_beginning(*fresh)
        else:
            await consumer.seek_to_end(*fresh)
        starts: dict[str, list[int]] = defaultdict(list)
        for tp in fresh:
            starts[tp.topic].append(await consumer.position(tp))
        for topic, offsets in starts.items():
            channel = self._hub.channels.get(topic)
            if channel is None:
                self._hub.open_channel(topic, offsets)
            else:
                channel.add_partitions(offsets)
            logger.info("serving %s: %d new partition(s) from offsets %s", topic, len(offsets), offsets)
