"""Fan-out: one channel per topic, records encoded once, one append per subscriber per batch.

The Kafka reader calls :meth:`Channel.publish` with a batch; the channel
encodes each record once, keeps it in the ring and hands the batch to the
views over the topic (views.py: streams that share topics, filter and
format), each of which appends one chunk to each of its subscribers'
outboxes (outbox.py). Publishing never awaits, so a slow
browser can never hold up the reader or another browser: a subscriber whose
outbox would pass its byte bound is closed instead, and its browser resumes
from its last id.

Everything here runs on the event loop thread and nothing here awaits while
it changes state, so subscribing (replay, then live) is atomic with respect to
publishing: no record can fall between the replay and the live stream.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge import cursor as cursors
from bridge.batch import Batch
from bridge.events import KafkaRecord, record_event
from bridge.outbox import CloseReason, Subscriber
from bridge.ring import Entry, RingBuffer
from bridge.views import AHEAD_WAIT_SECONDS, Subscription, View


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

    @property
    def connected(self) -> int:
        return self.streams_opened - sum(self.streams_closed.values())


class Channel:
    """One served topic: its position, its ring, the views over it and its counters."""

    def __init__(self, topic: str, start: Sequence[int], *, ring_records: int, ring_bytes: int,
                 type_header: str | None) -> None:  # fmt: skip
        self.topic = topic
        self.position = list(start)
        self.ring = RingBuffer(start, max_records=ring_records, max_bytes=ring_bytes)
        self.type_header = type_header
        self.views: dict[View, None] = {}  # an ordered set
        self.stats = TopicStats()

    def add_partitions(self, starts: Sequence[int]) -> None:
        self.position.extend(starts)
        self.ring.add_partitions(starts)
        for view in tuple(self.views):
            view.attach_caught_up()

    def publish(self, records: Sequence[KafkaRecord]) -> None:
        entries = []
        for record in records:
            self.position[record.partition] = record.offset + 1
            position = tuple(self.position)
            frame = record_event(record, id=cursors.encode(position), type_header=self.type_header)
            entry = Entry(record.partition, record.offset, position, frame, record.timestamp, record)
            entries.append(entry)
            self.ring.append(entry)
        if not entries:
            return
        views = tuple(self.views)
        batch = Batch(self, entries)
        for view in views:
            view.deliver(batch)
        # After the fan-out: a client the batch brings level replays it from the
        # ring, so it must not get the live chunk as well.
        for view in views:
            view.attach_caught_up()


class Hub:
    """The channels of every served topic, and the views over them."""

    def __init__(self, *, ring_records: int, ring_bytes: int, type_header: str | None,
                 ahead_wait: float = AHEAD_WAIT_SECONDS) -> None:  # fmt: skip
        self.channels: dict[str, Channel] = {}
        self.views: dict[Subscription, View] = {}
        self._ahead_wait = ahead_wait
        self._ring_records = ring_records
        self._ring_bytes = ring_bytes
        self._type_header = type_header

    def open_channel(self, topic: str, start: Sequence[int]) -> Channel:
        channel = Channel(topic, start, ring_records=self._ring_records, ring_bytes=self._ring_bytes,
                          type_header=self._type_header)  # fmt: skip
        self.channels[topic] = channel
        return channel

    def view(self, subscription: Subscription) -> View:
        """The view streams of ``subscription`` share; its topics must be served."""
        view = self.views.get(subscription)
        if view is None:
            # Registered at once, so that streams still catching up share it too;
            # it leaves when its last stream ends (View.unsubscribe).
            channels = [self.channels[topic] for topic in subscription.topics]
            view = self.views[subscription] = View(subscription, channels, self.views, self._ahead_wait)
        return view

    def _all_views(self) -> list[View]:
        """Each view once: registered ones, and those still on a channel (a dict keeps them in order, unique)."""
        views = dict.fromkeys(self.views.values())
        views.update(dict.fromkeys(view for channel in self.channels.values() for view in channel.views))
        return list(views)

    def open_streams(self) -> list[Subscriber]:
        """Every subscriber of every view: live, or waiting for the channels to reach its cursor."""
        return [subscriber for view in self._all_views() for subscriber in view.open_streams()]

    def close_all(self, reason: CloseReason) -> None:
        for view in self._all_views():
            view.close_all(reason)
