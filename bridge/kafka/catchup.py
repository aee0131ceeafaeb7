"""Catch-up: what a client missed, read from Kafka itself, then handed to the live channel.

A client whose cursor the rings no longer cover (or that asked for a point in
time with ``since``) gets a short-lived reader of its own, over every topic
of its stream. Records its filter skips move its position on all the same,
and a batch that skipped some ends with an id-only frame, so a client that
reconnects mid-way does not read them again. The reader delivers
records from the client's cursor on, but never at or past the channel's live
position: those are the channel's to deliver. As soon as the ring covers the
reader's position in every topic, the client subscribes to its view, which
replays the rest from the rings and goes live. That last step does not await, so no record
can fall between Kafka and the ring: no gap, no duplicate.

The same path serves a stream that fell behind the live path further than
its rings reach (fanout/behind.py): it is caught up from the cursor of the
last event it was given, then goes back through the rings to live.

At most ``max_catchups`` readers run at once; other clients wait their turn
with their stream open and heartbeats flowing. A reader reads no faster than
its client takes the events, and at most ``FETCH_BYTES`` per fetch. While
others wait, a reader whose client has not taken what it read within
``YIELD_SECONDS`` gives up its slot and its consumer, so slow clients cannot
hold every slot: once its client has taken it all, it waits its turn again
and goes on from where it was. A client that takes nothing at all is cut by
its stream (http/stall.py), which ends the reader too.

Offsets below what Kafka still retains are reported with a ``gap`` event
(``{"topic", "partitions": [{"partition", "requested", "first_available"}]}``)
and resume from the first available offset: at the start, and also when
retention removes records while the reader is still on its way to them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from bridge.config import Settings
from bridge.fanout.channel import Channel, Resume
from bridge.fanout.outbox import CloseReason, Cursor, Subscriber
from bridge.fanout.views import View
from bridge.kafka.decoding import SchemaTopics
from bridge.kafka.registry import SchemaRegistry
from bridge.kafka.source import FETCH_MAX_WAIT_MS
from bridge.wire import cursor as cursors
from bridge.wire import sse
from bridge.wire.events import KafkaRecord, gap_event

logger = logging.getLogger("bridge.catchup")  # the name operators' log filters know

EARLIEST = "earliest"
MAX_TIMESTAMP_MS = 2**63 - 1
# Records encoded between two awaits: aiokafka would hand over a whole fetch
# (hundreds of thousands), stalling every other connection for the encoding.
BATCH_RECORDS = 5000
# Bytes a reader fetches at once (aiokafka's default is 50 MB): a reader's memory is about this, and its events.
FETCH_BYTES = 4 * 1024 * 1024
# How long a reader waits for its client to take what it read before it lets a waiting one have its slot.
YIELD_SECONDS = 1.0


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
    def __init__(self, settings: Settings, kafka: Mapping[str, Any], schemas: SchemaTopics | None = None) -> None:
        self._kafka = kafka  # client.client_options: brokers, SASL, TLS
        self._isolation_level = settings.isolation_level  # as the live reader's: the same records
        # without: as the settings say (no --schema-topics, no decoding)
        self._schemas = schemas or SchemaTopics(settings, SchemaRegistry(settings))
        self._slots = asyncio.Semaphore(settings.max_catchups)
        self.running = 0
        self.waiting = 0  # for a slot
        # the stream's view, and the catch-up's own task: a stream that falls behind again
        # may start its next catch-up while the last one still stops its consumer
        self._subscribers: dict[Subscriber, tuple[View, asyncio.Task[None]]] = {}

    def start(self, view: View, subscriber: Subscriber, start: Cursor | Since) -> asyncio.Task[None]:
        """Bring ``subscriber`` from ``start`` to its view, in a task. Failures
        end the stream cleanly; the browser reconnects with its last id."""
        task = asyncio.create_task(self._catch_up(view, subscriber, start))
        self._subscribers[subscriber] = (view, task)  # from now on, so a shutdown ends it while it waits for a slot
        return task

    async def _catch_up(self, view: View, subscriber: Subscriber, start: Cursor | Since) -> None:
        try:
            resume: Cursor | Since | None = start
            while resume is not None:
                self.waiting += 1
                try:
                    await self._slots.acquire()
                finally:
                    self.waiting -= 1
                self.running += 1
                try:
                    resume = await self._resume(view, subscriber, resume)
                finally:
                    self.running -= 1
                    self._slots.release()
                if resume is not None:  # it gave up its slot: its client takes what was read, then it waits again
                    await subscriber.drained()
        except Exception:
            logger.exception("catch-up on %s failed; the client will reconnect", ",".join(view.subscription.topics))
            subscriber.close(CloseReason.ERROR)
        finally:
            if self._subscribers.get(subscriber, (None, None))[1] is asyncio.current_task():
                del self._subscribers[subscriber]

    async def _resume(self, view: View, subscriber: Subscriber, start: Cursor | Since) -> Cursor | None:
        """None once in the view (or closed); else where to go on from, the slot given up."""
        if subscriber.reason is not None:
            return None
        consumer = AIOKafkaConsumer(
            **self._kafka, group_id=None, enable_auto_commit=False, isolation_level=self._isolation_level,
            # "none": records deleted under the reader raise, so the client hears of the gap
            auto_offset_reset="none", fetch_max_wait_ms=FETCH_MAX_WAIT_MS, fetch_max_bytes=FETCH_BYTES,
        )  # fmt: skip
        try:
            await consumer.start()
            return await _Reader(consumer, view, subscriber, start, self._schemas, lambda: self.waiting > 0).run()
        finally:
            await consumer.stop()

    def open_streams(self) -> list[Subscriber]:
        """The streams still catching up or waiting to (they are in no channel yet)."""
        return list(self._subscribers)

    def streams_per_topic(self) -> Counter[str]:
        """Per topic, the streams over it catching up or waiting to."""
        return Counter(topic for view, _ in self._subscribers.values() for topic in view.subscription.topics)

    def close_all(self, reason: CloseReason) -> None:
        for subscriber in tuple(self._subscribers):
            subscriber.close(reason)


class _Reader:
    """One client's catch-up: its position in every topic of its view."""

    def __init__(self, consumer: AIOKafkaConsumer, view: View, subscriber: Subscriber, start: Cursor | Since,
                 schemas: SchemaTopics, contended: Callable[[], bool]) -> None:  # fmt: skip
        self.consumer = consumer
        self.contended = contended  # other clients wait for a slot
        self.schemas = schemas
        self.view = view
        self.subscriber = subscriber
        self.start = start
        self.positions: list[list[int]] = [[] for _ in view.channels]
        self.index = {channel.topic: index for index, channel in enumerate(view.channels)}

    def cursor(self) -> Cursor:
        """The positions, plus the cursor's offsets of partitions this bridge has not seen yet."""
        start = self.start
        if isinstance(start, Since):
            return tuple(map(tuple, self.positions))
        return tuple((*known, *start[index][len(known) :]) for index, known in enumerate(self.positions))

    async def run(self) -> Cursor | None:
        """None once in the view (or closed); the cursor to go on from if it gave up its slot."""
        consumer, view, subscriber = self.consumer, self.view, self.subscriber
        delivered = 0
        while True:
            if any(channel.deleted for channel in view.channels):
                subscriber.close(CloseReason.TOPIC_DELETED)
                return None
            await self._assign_new_partitions()
            if subscriber.reason is not None:
                return None
            if view.replayable(self.positions):
                logger.info("catch-up on %s read %d record(s) from Kafka, joins live at %s",
                            ",".join(view.subscription.topics), delivered,
                            cursors.encode_streams(self.cursor(), view.tags))  # fmt: skip
                view.subscribe(subscriber, self.cursor())
                return None
            # Partitions read up to the live position wait; the others are fetched.
            caught_up = {
                TopicPartition(channel.topic, p)
                for channel, position in zip(view.channels, self.positions, strict=True)
                for p, offset in enumerate(position)
                if offset >= channel.position[p]
            }
            consumer.pause(*caught_up)
            consumer.resume(*(consumer.assignment() - caught_up))
            try:
                batch = await consumer.getmany(timeout_ms=FETCH_MAX_WAIT_MS * 2, max_records=BATCH_RECORDS)
            except OffsetOutOfRangeError as error:  # retention removed records while this reader was reading
                await self._skip_deleted(error.args[0])
                continue
            decoded = {tp: await self.schemas.decode(tp.topic, records) for tp, records in batch.items()}
            frames, skipped = self._encode(decoded)
            delivered += len(frames)
            for tp in consumer.assignment() - caught_up:
                # Offsets that hold no record (transaction markers, compacted away) are
                # passed by the consumer without a record: move past them too.
                fetched_to = await consumer.position(tp)
                channel, position = self._partition_of(tp)
                position[tp.partition] = max(position[tp.partition], min(fetched_to, channel.position[tp.partition]))
            if skipped:  # the filter's skipped records are passed: a reconnect does not read them again
                frames.append(sse.format_id(cursors.encode_streams(self.cursor(), view.tags)))
            if frames:
                subscriber.push_backlog(frames)
                while not await subscriber.drained(YIELD_SECONDS):
                    if self.contended():
                        return self.cursor()

    def _partition_of(self, tp: TopicPartition) -> tuple[Channel, list[int]]:
        index = self.index[tp.topic]
        return self.view.channels[index], self.positions[index]

    def _encode(self, batch: dict[TopicPartition, Sequence[KafkaRecord]]) -> tuple[list[bytes], bool]:
        """The events of a fetched batch below the live positions, and whether the filter skipped any."""
        frames: list[bytes] = []
        skipped = False
        view = self.view
        # Encoded once per batch; along a record's ids only its own partition's field changes.
        writers = [cursors.CursorWriter(own, tag) for own, tag in zip(self.cursor(), view.tags, strict=True)]
        for tp, records in batch.items():
            index, partition = self.index[tp.topic], tp.partition
            channel, position, writer = view.channels[index], self.positions[index], writers[index]
            live = channel.position[partition]
            before, after = cursors.around(writers, index)
            events = 0
            for record in records:
                if record.offset >= live:
                    # the channel delivers from here; read this partition again next time round
                    self.consumer.seek(tp, position[partition])
                    break
                position[partition] = record.offset + 1
                own = writer.advance(partition, record.offset + 1)
                kept, parsed = view.keeps(record)
                if not kept:
                    skipped = True
                    continue
                events += 1
                frames.append(view.event(index, record, before + own + after, parsed))
            channel.stats.events_delivered += events
        return frames, skipped

    async def _assign_new_partitions(self) -> None:
        """At the start, or when partitions were added: read them too, from where they start."""
        added = {
            index: [TopicPartition(channel.topic, p) for p in range(len(self.positions[index]), len(channel.position))]
            for index, channel in enumerate(self.view.channels)
            if len(self.positions[index]) < len(channel.position)
        }
        if not added:
            return
        # assign() replaces the assignment and forgets every position: seek them all again
        self.consumer.assign([*self.consumer.assignment(), *itertools.chain(*added.values())])
        for index, partitions in added.items():
            channel, position = self.view.channels[index], self.positions[index]
            start = self.start if isinstance(self.start, Since) else self.start[index]
            starts, gap = await self._starts(channel, partitions, start)
            if gap and not position:  # counted once, for the resume itself
                channel.stats.resumes[Resume.GAP] += 1
            position.extend(starts)
        for channel, position in zip(self.view.channels, self.positions, strict=True):
            for partition, offset in enumerate(position):
                self.consumer.seek(TopicPartition(channel.topic, partition), offset)

    async def _skip_deleted(self, out_of_range: dict[TopicPartition, int]) -> None:
        earliest = await self.consumer.beginning_offsets(list(out_of_range))
        for topic in {tp.topic for tp in out_of_range}:
            channel, position = self._partition_of(TopicPartition(topic, 0))
            requested = {tp: offset for tp, offset in out_of_range.items() if tp.topic == topic}
            for tp, offset in _announce_deleted(channel, self.subscriber, requested, earliest).items():
                position[tp.partition] = max(position[tp.partition], offset)
                self.consumer.seek(tp, position[tp.partition])

    async def _starts(
        self, channel: Channel, partitions: list[TopicPartition], start: tuple[int, ...] | Since
    ) -> tuple[list[int], bool]:
        """Where each of ``partitions`` starts, and whether a gap event announced
        offsets Kafka no longer has."""
        consumer = self.consumer
        if isinstance(start, Since) and start.timestamp_ms is not None:
            found = await consumer.offsets_for_times({tp: start.timestamp_ms for tp in partitions})
            ends = await consumer.end_offsets(partitions)
            return [found[tp].offset if found[tp] is not None else ends[tp] for tp in partitions], False
        earliest = await consumer.beginning_offsets(partitions)
        if isinstance(start, Since):
            return [earliest[tp] for tp in partitions], False
        requested = {tp: cursors.offset_for(start, tp.partition) for tp in partitions}
        resumed = _announce_deleted(channel, self.subscriber, requested, earliest)
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
