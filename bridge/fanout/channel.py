"""A channel: one served topic's position, ring, counters, and the views it hands batches to.

The Kafka reader calls :meth:`Channel.publish` with a batch; the channel
encodes each record once, keeps it in the ring and hands the batch to the
listeners over the topic: the views (views.py), each of which appends one
chunk to each of its subscribers' outboxes (outbox.py). Publishing never
awaits, so a slow browser can never hold up the reader or another browser: a
subscriber whose outbox would pass its byte bound leaves the live path and
is fed from the ring at its own pace (behind.py).

Everything here runs on the event loop thread and nothing here awaits while
it changes state, so subscribing (replay, then live) is atomic with respect to
publishing: no record can fall between the replay and the live stream.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bridge.fanout.batch import Batch
from bridge.fanout.latency import DeliveryLatency
from bridge.fanout.outbox import CloseReason, Subscriber
from bridge.fanout.ring import Entry, RingBudget, RingBuffer
from bridge.wire import cursor as cursors
from bridge.wire.events import KafkaRecord, event_type_from_headers, record_event


class Resume(enum.Enum):
    """How a stream that does not start live finds its start."""

    RING = "ring"  # an id the ring covers: replayed from memory
    KAFKA = "kafka"  # an id the ring no longer covers: caught up from Kafka
    GAP = "gap"  # Kafka no longer has part of it either: a gap event was sent
    SINCE = "since"  # a point in time: read from Kafka


@dataclass(slots=True)
class TopicStats:
    """What happened on one topic, counted as plain ints where it happens and
    read at scrape time (metrics.py): no locks, no label lookups in the hot path."""

    records_consumed: int = 0
    events_delivered: int = 0  # record events handed to subscribers: live, replayed, caught up
    delivered_bytes: int = 0  # written to connections, heartbeats and the preamble aside
    streams_opened: int = 0
    streams_closed: dict[CloseReason, int] = field(default_factory=lambda: dict.fromkeys(CloseReason, 0))
    resumes: dict[Resume, int] = field(default_factory=lambda: dict.fromkeys(Resume, 0))
    heartbeats: int = 0
    send_failures: int = 0
    fell_behind: int = 0  # live streams whose next chunk did not fit their outbox (behind.py)
    rejoined_live: int = 0  # of those, the ones that came level again

    @property
    def connected(self) -> int:
        return self.streams_opened - sum(self.streams_closed.values())


class Listener(Protocol):
    """What a channel hands its batches to: a view (views.py), which registers itself in ``Channel.views``."""

    def deliver(self, batch: Batch) -> None: ...

    def attach_caught_up(self) -> None: ...

    def open_streams(self) -> list[Subscriber]: ...

    def on_paths(self) -> tuple[Sequence[str], int, int]:
        """Its topics, its live streams, and its streams fed from the rings."""
        ...

    def close_all(self, reason: CloseReason) -> None: ...


class Channel:
    """One served topic: its position, its ring, the views over it and its counters."""

    def __init__(self, topic: str, start: Sequence[int], *, ring_records: int, ring_bytes: int,
                 type_header: str | None, budget: RingBudget, stats: TopicStats | None = None,
                 tag: str = "", latency: DeliveryLatency | None = None) -> None:  # fmt: skip
        self.topic = topic
        self.latency = latency  # the hub's: how late the live records it publishes are
        self.tag = tag  # of the topic's Kafka id, in every event id (cursor.py)
        self.deleted = False  # the topic was deleted: its streams end with a deleted event
        self.ids = cursors.CursorWriter(start, tag)  # the position, and its id kept encoded
        self.ring = RingBuffer(start, max_records=ring_records, max_bytes=ring_bytes, budget=budget)
        self.type_header = type_header
        self.views: dict[Listener, None] = {}  # an ordered set
        self.stats = stats if stats is not None else TopicStats()

    @property
    def position(self) -> list[int]:
        """The next offset of every partition (changed through ``ids`` only, which keeps it encoded)."""
        return self.ids.offsets

    def add_partitions(self, starts: Sequence[int]) -> None:
        self.ids.extend(starts)
        self.ring.add_partitions(starts)
        for view in tuple(self.views):
            view.attach_caught_up()

    def named_event_types(self, recent: int = 1000) -> list[str]:
        """The event types the type header gave the topic's last ``recent``
        records: EventSource delivers only the types a page listens for, so the
        page asks which (``GET /topics``)."""
        named = {event_type_from_headers(entry.record.headers, self.type_header)
                 for entry in self.ring.newest(recent) if entry.record.headers}  # fmt: skip
        return sorted(name for name in named if name is not None)

    def publish(self, records: Sequence[KafkaRecord]) -> None:
        start, first_seq = tuple(self.position), self.ring.next_seq
        entries = []
        advance = self.ids.advance
        for record in records:
            # the id is the position after the record: one field of it rewritten, whatever the partition count
            id = advance(record.partition, record.offset + 1)
            frame = record_event(record, id=id, type_header=self.type_header)
            entry = Entry(record.partition, record.offset, frame, record.timestamp, record)
            entries.append(entry)
            self.ring.append(entry)
        if not entries:
            return
        views = tuple(self.views)
        batch = Batch(self.topic, self.type_header, entries, first_seq=first_seq, start=start)
        for view in views:
            view.deliver(batch)
        # After the fan-out: a client the batch brings level replays it from the
        # ring, so it must not get the live chunk as well.
        for view in views:
            view.attach_caught_up()
        if self.latency is not None:
            self.latency.published(records)
