"""Schema topics: their records decoded once, in order, before they are published.

Records of a ``--schema-topics`` topic are published as DecodedRecords
(wire/schemas.py), the ring and every view sharing that one decoding. When
every schema id of a batch is known (the usual case) the batch is decoded and
published at once, as a JSON topic's would be. Otherwise the batch waits in
its topic's queue while the registry is asked, and the topic's later batches
queue behind it, so a partition's order never changes; the reader pauses the
topic's partitions while its queue is not empty (so a registry that is down
costs no memory beyond the batches already read) and keeps reading every
other topic. A batch whose fetch failed is published all the same, its
records ``undecodable``.

Catch-up readers decode what they read through :meth:`SchemaTopics.decode`,
the same decoding from the same cache, so a resumed stream reads as the live one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from bridge.config import Settings
from bridge.fanout.channel import Channel
from bridge.kafka.registry import SchemaRegistry
from bridge.wire.decoded import DecodedRecord, Undecodable
from bridge.wire.events import KafkaRecord
from bridge.wire.schemas import Lookup, Schema, decode_record, schema_ids

logger = logging.getLogger("bridge.decoding")


class _NotInMemory(Exception):
    """A schema of the batch must be fetched: the batch waits in its topic's queue."""


class SchemaTopics:
    def __init__(self, settings: Settings, registry: SchemaRegistry) -> None:
        self._settings = settings
        self.registry = registry
        self._queues: dict[str, deque[Sequence[KafkaRecord]]] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self.undecodable: dict[tuple[str, str], int] = {}  # (topic, reason) → records, for the metrics

    def applies(self, topic: str) -> bool:
        return self._settings.has_schemas(topic)

    @property
    def waiting(self) -> set[str]:
        """Topics whose records wait for the registry: their partitions are not read meanwhile."""
        return set(self._queues)

    def publish(self, channel: Channel, records: Sequence[KafkaRecord]) -> None:
        """``channel.publish(records)``, decoded first for a schema topic; never awaits."""
        topic = channel.topic
        if not self.applies(topic):
            channel.publish(records)
            return
        queue = self._queues.get(topic)
        if queue is None:
            try:  # the usual case: every schema is in memory, found as each record is decoded
                decoded = self._decode(topic, records, self._in_memory)
            except _NotInMemory:
                pass
            else:
                channel.publish(decoded)
                return
            queue = self._queues[topic] = deque()
            drain = asyncio.create_task(self._drain(channel, queue), name=f"schema-topic-{topic}")
            self._drains.add(drain)
            drain.add_done_callback(self._drained)
        queue.append(records)

    async def _drain(self, channel: Channel, queue: deque[Sequence[KafkaRecord]]) -> None:
        try:
            while queue:
                records = queue[0]
                schemas = await self.registry.resolve(schema_ids(records))
                # A reassignment seeks the reader back to the channel's position, which is
                # behind this queue: what it read again is here already.
                fresh = [r for r in records if r.offset >= channel.position[r.partition]]
                channel.publish(self._decode(channel.topic, fresh, schemas.__getitem__))
                queue.popleft()
        finally:
            del self._queues[channel.topic]

    async def decode(self, topic: str, records: Sequence[KafkaRecord]) -> Sequence[KafkaRecord]:
        """``records`` as a catch-up serves them: decoded for a schema topic."""
        if not self.applies(topic) or not records:
            return records
        ids = schema_ids(records)
        schemas = self.registry.known(ids) or await self.registry.resolve(ids)
        return self._decode(topic, records, schemas.__getitem__)

    def _in_memory(self, schema_id: int) -> Schema | Undecodable:
        found = self.registry.in_memory(schema_id)
        if found is None:
            raise _NotInMemory
        return found

    def _decode(self, topic: str, records: Sequence[KafkaRecord], lookup: Lookup) -> list[DecodedRecord]:
        """``records`` decoded; the undecodable ones counted (once all are decoded: a lookup may raise)."""
        decoded = [decode_record(record, lookup) for record in records]
        for record in decoded:
            if record.undecodable is not None:
                key = (topic, record.undecodable.reason.value)
                self.undecodable[key] = self.undecodable.get(key, 0) + 1
        return decoded

    def _drained(self, drain: asyncio.Task[None]) -> None:
        self._drains.discard(drain)
        if not drain.cancelled() and drain.exception() is not None:
            logger.error("%s stopped", drain.get_name(), exc_info=drain.exception())

    async def stop(self) -> None:
        for drain in tuple(self._drains):
            drain.cancel()
