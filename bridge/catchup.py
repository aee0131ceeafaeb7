"""Catch-up: what a client missed, read from Kafka itself, then handed to the live channel.

A client whose cursor the ring no longer covers (or that asked for a point in
time with ``since``) gets a short-lived reader of its own. The reader delivers
records from the client's cursor on, but never at or past the channel's live
position: those are the channel's to deliver. As soon as the ring covers the
reader's position, the client subscribes to the channel, which replays the
rest from the ring and goes live. That last step does not await, so no record
can fall between Kafka and the ring: no gap, no duplicate.

At most ``max_catchups`` readers run at once; other clients wait their turn
with their stream open and heartbeats flowing. A reader reads no faster than
its client takes the events.

Offsets below what Kafka still retains are reported with a ``gap`` event
(``{"topic", "partitions": [{"partition", "requested", "first_available"}]}``)
and resume from the first available offset: at the start, and also when
retention removes records while the reader is still on its way to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from bridge import cursor as cursors
from bridge.config import Settings
from bridge.events import gap_event, record_event
from bridge.hub import Channel, CloseReason, Resume, Subscriber
from bridge.source import FETCH_MAX_WAIT_MS

logger = logging.getLogger("bridge.catchup")

EARLIEST = "earliest"
MAX_TIMESTAMP_MS = 2**63 - 1
# Records encoded between two awaits: aiokafka would hand over a whole fetch
# (hundreds of thousands), stalling every other connection for the encoding.
BATCH_RECORDS = 5000
# A client that takes no catch-up event for this long holds a reader slot for nothing.
STALLED_CLIENT_SECONDS = 30.0


@dataclass(frozen=True)
class Since:
    """A start in time: epoch milliseconds, or ``EARLIEST``."""

    timestamp_ms: int | None  # None: the earliest record retained


def parse_since(text: str) -> Since:
    """``earliest``, epoch milliseconds, or an ISO-8601 time (UTC when it has no offset)."""
    if text == EARLIEST:
        return Since(None)
    if text.isascii() and text.isdecimal():
        if int(text) > MAX_TIMESTAMP_MS:
            raise ValueError(f"since={text[:64]!r} is past the largest Kafka timestamp")
        return Since(int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"since={text[:64]!r} is not 'earliest', epoch milliseconds or an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Since(max(0, int(moment.timestamp() * 1000)))


class CatchUps:
    def __init__(self, settings: Settings, kafka: Mapping[str, Any]) -> None:
        self._kafka = kafka  # kafkaclient.client_options: brokers, SASL, TLS
        self._slots = asyncio.Semaphore(settings.max_catchups)
        self.running = 0
        self.waiting = 0  # for a slot
        self._subscribers: set[Subscriber] = set()

    async def resume(self, channel: Channel, subscriber: Subscriber, start: tuple[int, ...] | Since) -> None:
        """Bring ``subscriber`` from ``start`` to the live channel. Failures
        end the stream cleanly; the browser reconnects with its last id."""
        try:
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
            self.running += 1
            try:
                await self._resume(channel, subscriber, start)
            finally:
                self.running -= 1
                self._slots.release()
        except Exception:
            logger.exception("catch-up on %s failed; the client will reconnect", channel.topic)
            subscriber.close(CloseReason.ERROR)

    async def _resume(self, channel: Channel, subscriber: Subscriber, start: tuple[int, ...] | Since) -> None:
        if subscriber.reason is not None:
            return
        consumer = AIOKafkaConsumer(
            **self._kafka, group_id=None, enable_auto_commit=False,
            # "none": records deleted under the reader raise, so the client hears of the gap
            auto_offset_reset="none", fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )  # fmt: skip
        self._subscribers.add(subscriber)
        try:
            await consumer.start()
            await self._read(consumer, channel, subscriber, start)
        finally:
            self._subscribers.discard(subscriber)
            await consumer.stop()

    def close_all(self, reason: CloseReason) -> None:
        """End the streams still catching up (they are in no channel yet)."""
        for subscriber in tuple(self._subscribers):
            subscriber.close(reason)

    async def _read(
        self, consumer: AIOKafkaConsumer, channel: Channel, subscriber: Subscriber, start: tuple[int, ...] | Since
    ) -> None:
        topic = channel.topic
        position: list[int] = []
        delivered = 0

        def with_unknown(known: list[int]) -> list[int]:
            """The position plus the cursor's offsets of partitions this bridge has not seen yet."""
            return known + list(start[len(known) :]) if isinstance(start, tuple) else known

        while True:
            if len(position) < len(channel.position):  # at the start, or partitions were added
                added = [TopicPartition(topic, p) for p in range(len(position), len(channel.position))]
                consumer.assign([*consumer.assignment(), *added])
                starts, gap = await self._starts(consumer, channel, subscriber, added, start)
                if gap and not position:  # counted once, for the resume itself
                    channel.stats.resumes[Resume.GAP] += 1
                position.extend(starts)
                for partition, offset in enumerate(position):
                    consumer.seek(TopicPartition(topic, partition), offset)
            if subscriber.reason is not None:
                return
            if not channel.ring.uncovered(position):
                logger.info("catch-up on %s read %d record(s) from Kafka, joins live at %s",
                            topic, delivered, cursors.encode(with_unknown(position)))  # fmt: skip
                channel.subscribe(subscriber, with_unknown(position))
                return
            # Partitions read up to the live position wait; the others are fetched.
            caught_up = {TopicPartition(topic, p) for p, offset in enumerate(position) if offset >= channel.position[p]}
            consumer.pause(*caught_up)
            consumer.resume(*(consumer.assignment() - caught_up))
            try:
                batch = await consumer.getmany(timeout_ms=FETCH_MAX_WAIT_MS * 2, max_records=BATCH_RECORDS)
            except OffsetOutOfRangeError as error:  # retention removed records while this reader was reading
                await self._skip_deleted(consumer, channel, subscriber, position, error.args[0])
                continue
            frames = []
            for tp, records in batch.items():
                live = channel.position[tp.partition]
                for record in records:
                    if record.offset >= live:
                        # the channel delivers from here; read this partition again next time round
                        consumer.seek(tp, position[tp.partition])
                        break
                    position[tp.partition] = record.offset + 1
                    frames.append(record_event(record, id=cursors.encode(with_unknown(position)),
                                               type_header=channel.type_header))  # fmt: skip
            for tp in consumer.assignment() - caught_up:
                # Offsets that hold no record (transaction markers, compacted away) are
                # passed by the consumer without a record: move past them too.
                fetched_to = await consumer.position(tp)
                position[tp.partition] = max(position[tp.partition], min(fetched_to, channel.position[tp.partition]))
            if frames:
                delivered += len(frames)
                channel.stats.events_delivered += len(frames)
                subscriber.push_backlog(frames)
                try:
                    await asyncio.wait_for(subscriber.drained(), STALLED_CLIENT_SECONDS)
                except TimeoutError:
                    subscriber.close(CloseReason.SLOW)  # it holds a slot and a consumer: let it reconnect

    async def _skip_deleted(
        self,
        consumer: AIOKafkaConsumer,
        channel: Channel,
        subscriber: Subscriber,
        position: list[int],
        out_of_range: dict[TopicPartition, int],
    ) -> None:
        resumed = _announce_deleted(
            channel, subscriber, out_of_range, await consumer.beginning_offsets(list(out_of_range))
        )
        for tp, offset in resumed.items():
            position[tp.partition] = max(position[tp.partition], offset)
            consumer.seek(tp, position[tp.partition])

    async def _starts(
        self,
        consumer: AIOKafkaConsumer,
        channel: Channel,
        subscriber: Subscriber,
        partitions: list[TopicPartition],
        start: tuple[int, ...] | Since,
    ) -> tuple[list[int], bool]:
        """Where each of ``partitions`` starts, and whether a gap event announced
        offsets Kafka no longer has."""
        if isinstance(start, Since) and start.timestamp_ms is not None:
            found = await consumer.offsets_for_times({tp: start.timestamp_ms for tp in partitions})
            ends = await consumer.end_offsets(partitions)
            return [found[tp].offset if found[tp] is not None else ends[tp] for tp in partitions], False
        earliest = await consumer.beginning_offsets(partitions)
        if isinstance(start, Since):
            return [earliest[tp] for tp in partitions], False
        requested = {tp: cursors.offset_for(start, tp.partition) for tp in partitions}
        resumed = _announce_deleted(channel, subscriber, requested, earliest)
        return [resumed[tp] for tp in partitions], resumed != requested


def _announce_deleted(
    channel: Channel, subscriber: Subscriber, requested: dict[TopicPartition, int], earliest: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Where to read from: the requested offset, or the first one Kafka still
    has, announced to the client with a gap event."""
    lost = [(tp.partition, offset, earliest[tp]) for tp, offset in requested.items() if offset < earliest[tp]]
    if lost:
        subscriber.push_backlog([gap_event(channel.topic, lost)])
    return {tp: max(offset, earliest[tp]) for tp, offset in requested.items()}
