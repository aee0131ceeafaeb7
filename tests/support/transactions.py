"""Transactional producers of two independent clients: aiokafka's and librdkafka's (confluent-kafka).

Both write one transaction at a time: records to chosen partitions, then a
commit or an abort; ``open`` leaves a transaction running until its producer
commits it later. Every record's value is its text, so tests can compare
what a stream receives with what was committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

Records = Sequence[tuple[int, str]]  # (partition, value)
TIMEOUT_SECONDS = 20.0


class TransactionalProducer(Protocol):
    async def start(self) -> None: ...
    async def begin(self, topic: str, records: Records) -> None:
        """Begin a transaction and write ``records``, acknowledged by the broker; it stays open."""

    async def end(self, commit: bool) -> None: ...
    async def stop(self) -> None: ...


async def transaction(producer: TransactionalProducer, topic: str, records: Records, *, commit: bool) -> None:
    await producer.begin(topic, records)
    await producer.end(commit)


class AiokafkaTransactions:
    def __init__(self, bootstrap_servers: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers,
                                          transactional_id=f"test-aiokafka-{uuid.uuid4().hex[:8]}")  # fmt: skip

    async def start(self) -> None:
        await self._producer.start()

    async def begin(self, topic: str, records: Records) -> None:
        await self._producer.begin_transaction()
        for partition, value in records:
            await self._producer.send_and_wait(topic, value.encode(), partition=partition)

    async def end(self, commit: bool) -> None:
        await (self._producer.commit_transaction() if commit else self._producer.abort_transaction())

    async def stop(self) -> None:
        await self._producer.stop()


class LibrdkafkaTransactions:
    """confluent-kafka's blocking calls, each run in a thread."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap_servers,
                                   "transactional.id": f"test-librdkafka-{uuid.uuid4().hex[:8]}"})  # fmt: skip

    async def start(self) -> None:
        await asyncio.to_thread(self._producer.init_transactions, TIMEOUT_SECONDS)

    async def begin(self, topic: str, records: Records) -> None:
        def write() -> None:
            self._producer.begin_transaction()
            for partition, value in records:
                self._producer.produce(topic, value.encode(), partition=partition)
            if self._producer.flush(TIMEOUT_SECONDS) != 0:
                raise TimeoutError("records not acknowledged")

        await asyncio.to_thread(write)

    async def end(self, commit: bool) -> None:
        end = self._producer.commit_transaction if commit else self._producer.abort_transaction
        await asyncio.to_thread(end, TIMEOUT_SECONDS)

    async def stop(self) -> None:
        await asyncio.to_thread(self._producer.flush, TIMEOUT_SECONDS)


PRODUCERS: dict[str, Callable[[str], TransactionalProducer]] = {
    "aiokafka": AiokafkaTransactions,
    "librdkafka": LibrdkafkaTransactions,
}
