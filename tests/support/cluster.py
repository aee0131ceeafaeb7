"""Talking to the test broker: topics, producing, and the broker itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.client import AIOKafkaClient

from bridge.kafka.topics import describe_topics
from bridge.wire import cursor as cursors

TOPIC_PREFIX = "test-"


def unique_topic(label: str = "t") -> str:
    return f"{TOPIC_PREFIX}{label}-{uuid.uuid4().hex[:10]}"


class Cluster:
    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers

    @asynccontextmanager
    async def _admin(self) -> AsyncIterator[AIOKafkaAdminClient]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            yield admin
        finally:
            await admin.close()

    async def create_topic(self, name: str, partitions: int = 3, *, replicas: Sequence[int] = ()) -> str:
        """``replicas``: the brokers every partition is placed on, the first its
        leader (one broker leads them all); else one replica, where Kafka chooses."""
        if replicas:
            assignment = {partition: list(replicas) for partition in range(partitions)}
            new = NewTopic(name, num_partitions=-1, replication_factor=-1, replica_assignments=assignment)
        else:
            new = NewTopic(name, num_partitions=partitions, replication_factor=1)
        async with self._admin() as admin:
            await admin.create_topics([new])
        return name

    async def delete_topic(self, name: str) -> None:
        async with self._admin() as admin:
            await admin.delete_topics([name])

    async def tag(self, name: str) -> str:
        """The tag of the topic's Kafka id, as the bridge puts it in event ids."""
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap_servers)
        await client.bootstrap()
        try:
            return cursors.topic_tag((await describe_topics(client))[name].topic_id)
        finally:
            await client.close()

    async def add_partitions(self, name: str, total: int) -> None:
        async with self._admin() as admin:
            await admin.create_partitions({name: NewPartitions(total_count=total)})

    async def delete_records(self, name: str, before: dict[int, int]) -> None:
        """Kafka's delete-records: as if retention had removed everything below ``before[partition]``."""
        async with self._admin() as admin:
            await admin.delete_records({TopicPartition(name, p): RecordsToDelete(at) for p, at in before.items()})

    async def produce(
        self,
        topic: str,
        values: Iterable[bytes | None],
        *,
        partition_of: Sequence[int] | None = None,
        partitions: int = 3,
        compression: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        keys: Sequence[bytes] | None = None,
        timestamp_ms: int | None = None,
    ) -> list[tuple[int, int]]:
        """Send values (round robin over ``partitions`` unless ``partition_of``
        says), wait for every ack, return each record's (partition, offset).
        ``timestamp_ms``: every record's CreateTime (default: now)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, compression_type=compression,
                                    linger_ms=5, max_request_size=8 * 1024 * 1024)  # fmt: skip
        await producer.start()
        try:
            futures = []
            for index, value in enumerate(values):
                partition = partition_of[index] if partition_of is not None else index % partitions
                key = keys[index] if keys is not None else str(index).encode()  # tombstones need a key
                futures.append(
                    await producer.send(
                        topic,
                        value,
                        key=key,
                        partition=partition,
                        headers=list(headers) or None,
                        timestamp_ms=timestamp_ms,
                    )
                )
            await producer.flush()
            return [((metadata := await future).partition, metadata.offset) for future in futures]
        finally:
            await producer.stop()
