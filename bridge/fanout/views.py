"""Views: the streams of one subscription share one selection and one encoding.

A subscription is what a stream asks for: a set of topics, a filter and a
format. Streams asking for the same one are the subscribers of one view. When
a channel publishes a batch, each view over that channel takes the records
its filter keeps (each distinct filter is evaluated once per record, shared by
every view using it, see batch.py), encodes them in its format with ids that
cover all of its topics, and appends that one chunk to each subscriber: the
work per batch is per view, never per subscriber.

An id covers every topic of the view (cursor.stream_id). A live
subscriber has received everything up to every channel's position, so the
id of a record is its own channel's position after it (in its frame), with
the other channels' current ids around it. Replay and catch-up, which are per
subscriber anyway, build ids from the subscriber's own positions instead, in
cursor writers of their own: along a run of one topic's records only its
cursor changes, one field of it per record, whatever the partition count.

A subscriber whose next chunk does not fit its outbox is moved off the live
path, holding its position (behind.py); so is one resuming from an id the
rings cover. Each is fed from the rings at its own pace and rejoins the live
path once level. Every step happens without an await across all the view's
channels, so no record of any topic can fall between the rings and the
live stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.fanout.batch import Batch, raw_body
from bridge.fanout.behind import Behind
from bridge.fanout.channel import Channel
from bridge.fanout.outbox import CloseReason, Cursor, Subscriber
from bridge.fanout.ring import Entry
from bridge.wire import cursor as cursors
from bridge.wire import sse
from bridge.wire.events import KafkaRecord, record_event, recreated_event, reset_event
from bridge.wire.filters import NO_FILTER, Filter
from bridge.wire.formats import Format, ParsedRecord, envelope_event

AHEAD_WAIT_SECONDS = 5.0
# A filtered view whose batches end on skipped records tells its streams how
# far they are at most this often: a reconnect then skips at most about this
# long of records again, at the cost of one small write per stream per interval.
ADVANCE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Subscription:
    topics: tuple[str, ...]  # distinct, sorted: the order of the id's parts
    filter: Filter = NO_FILTER
    format: Format = Format.RAW

    @classmethod
    def of(cls, topics: Sequence[str], filter: Filter = NO_FILTER, format: Format = Format.RAW) -> Subscription:
        return cls(tuple(sorted(set(topics))), filter, format)


class View:
    def __init__(self, subscription: Subscription, channels: Sequence[Channel], registry: dict[Subscription, View],
                 ahead_wait: float = AHEAD_WAIT_SECONDS) -> None:  # fmt: skip
        self.subscription = subscription
        self.channels = list(channels)  # in subscription.topics order
        self.tags = tuple(channel.tag for channel in self.channels)
        self.ids = tuple(channel.ids for channel in self.channels)  # the channels' cursors, kept encoded
        self.subscribers: set[Subscriber] = set()  # live
        self.behind: dict[Subscriber, Behind] = {}  # fed from the rings
        self.ahead_wait = ahead_wait
        self.advance_every = ADVANCE_SECONDS
        self._registry = registry
        self._waiting: dict[Subscriber, tuple[Cursor, asyncio.TimerHandle]] = {}
        self._advanced_at = float("-inf")  # when the last id-only frame was handed over
        # one topic, raw: the channel's own frames are this view's frames
        self.own_frames = len(channels) == 1 and subscription.format is Format.RAW
        self._filtered = bool(subscription.filter)

    @property
    def filter(self) -> Filter:
        return self.subscription.filter

    def keeps(self, record: KafkaRecord) -> tuple[bool, ParsedRecord | None]:
        """Whether the filter keeps ``record``, and the record parsed if the
        filter had to parse it (once per record in replay and catch-up: no
        filter, no ParsedRecord)."""
        if not self._filtered:
            return True, None
        parsed = ParsedRecord(record)
        return self.filter.matches(parsed), parsed

    def replayable(self, cursor: Sequence[Sequence[int]]) -> bool:
        """Every channel's ring covers its part of ``cursor``."""
        return not any(c.ring.uncovered(own) for c, own in zip(self.channels, cursor, strict=True))

    def reconcile(self, cursor: Cursor, tags: Sequence[str]) -> tuple[Cursor, list[bytes]]:
        """``cursor`` as this view's topics read it, and the events to open the
        stream with: a topic whose tag in the id names another Kafka topic id
        (deleted and created again since the id was issued) is read from the new
        topic's start, which a reset event says. Untagged ids are read as they are."""
        notices: list[bytes] = []
        read: list[tuple[int, ...]] = []
        for channel, own, tag in zip(self.channels, cursor, tags, strict=True):
            if tag and channel.tag and tag != channel.tag:
                notices.append(recreated_event(channel.topic, own))
                own = (0,) * len(channel.position)
            read.append(own)
        return tuple(read), notices

    def current_id(self) -> str:
        return cursors.stream_id(self.ids)

    # -- live ------------------------------------------------------------------

    def deliver(self, batch: Batch) -> None:
        """Hand this view's part of ``batch`` to every subscriber, as one chunk."""
        if not self.subscribers:
            return
        selected = batch.selected(self.filter)
        index = self.subscription.topics.index(batch.topic)  # the batch's channel among this view's
        chunk = b""
        if not selected:
            pass
        elif self.own_frames:
            chunk = batch.frames(selected)
        else:
            before, after = cursors.around(self.ids, index)
            prefix, suffix = before.encode(), after.encode()
            fmt = self.subscription.format
            chunk = b"".join(b"id: " + prefix + batch.own_id(i) + suffix + b"\n" + batch.body(fmt, i) for i in selected)
        if self._advance_due(batch, selected):
            chunk += sse.format_id(self.current_id())
        if not chunk:
            return
        fell: list[Subscriber] = []
        for subscriber in tuple(self.subscribers):
            if subscriber.reason is not None:
                self.subscribers.discard(subscriber)
            elif not subscriber.push(chunk):
                self.subscribers.discard(subscriber)
                fell.append(subscriber)
        # Those still here took the chunk: counted once per batch, not per subscriber.
        self.channels[index].stats.events_delivered += len(selected) * len(self.subscribers)
        if fell:
            self._fall_behind(fell, batch, index)

    def _fall_behind(self, fell: Sequence[Subscriber], batch: Batch, index: int) -> None:
        """Off the live path, each holding where it is: everything before ``batch`` given."""
        cursor = [tuple(channel.position) for channel in self.channels]  # shared: replaced, never changed
        cursor[index] = batch.start
        seqs = [channel.ring.next_seq for channel in self.channels]
        seqs[index] = batch.first_seq
        for subscriber in fell:
            subscriber.live_id = None
            subscriber.fell = True
            self._follow(Behind(self, subscriber, list(seqs), cursor))
        for channel in self.channels:
            channel.stats.fell_behind += len(fell)

    def _follow(self, behind: Behind) -> None:
        self.behind[behind.subscriber] = behind
        behind.subscriber.follow(behind)

    def join_live(self, behind: Behind) -> None:
        """``behind`` is level with every ring: live from here on."""
        subscriber = behind.subscriber
        del self.behind[subscriber]
        subscriber.feed = None
        self.subscribers.add(subscriber)
        if self.filter:
            subscriber.live_id = self.current_id
        if subscriber.fell:  # through the rings, or through Kafka and the rings
            subscriber.fell = False
            for channel in self.channels:
                channel.stats.rejoined_live += 1

    def leave_rings(self, behind: Behind) -> None:
        """A ring gave up an entry ``behind`` still needs: caught up from Kafka
        from its cursor, it comes back through ``subscribe``."""
        subscriber = behind.subscriber
        self.unsubscribe(subscriber)
        subscriber.feed = None
        if subscriber.catch_up is None:
            subscriber.close(CloseReason.ERROR)  # it reconnects with its last id, and catches up so
        else:
            subscriber.catch_up(behind.position())

    def _advance_due(self, batch: Batch, selected: Sequence[int]) -> bool:
        """Whether to end this chunk with an id-only frame: the batch ended on
        records the filter skipped, and the last such frame is ``advance_every`` seconds old."""
        if not self.filter or (selected and selected[-1] == len(batch.entries) - 1):
            return False
        now = time.monotonic()
        if now - self._advanced_at < self.advance_every:
            return False
        self._advanced_at = now
        return True

    # -- joining ---------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber, cursor: Cursor | None) -> None:
        """Replay what ``cursor`` has not seen, then go live.

        Every channel's ring must cover its part of the cursor; a client from
        further back catches up from Kafka first (kafka/catchup.py). A cursor ahead
        of a channel (another replica read further, or this one has not yet
        seen a new partition) waits, stream open, until every channel gets
        there; if one does not within ``ahead_wait`` seconds the offsets do
        not exist (a forged id, a recreated topic): a ``reset`` event says so
        and those partitions go on from the live position.
        """
        if any(channel.deleted for channel in self.channels):  # since the stream's request was read
            subscriber.close(CloseReason.TOPIC_DELETED)
            return
        self._register()
        if cursor is not None and any(self._ahead(cursor)):
            timer = asyncio.get_running_loop().call_later(self.ahead_wait, self._give_up, subscriber)
            self._waiting[subscriber] = (cursor, timer)
            return
        self._attach(subscriber, cursor)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self.behind.pop(subscriber, None)
        waiting = self._waiting.pop(subscriber, None)
        if waiting is not None:
            waiting[1].cancel()
        if not self.subscribers and not self.behind and not self._waiting:
            self._unregister()

    def open_streams(self) -> list[Subscriber]:
        return [*self.subscribers, *self.behind, *self._waiting]

    def on_paths(self) -> tuple[Sequence[str], int, int]:
        return self.subscription.topics, len(self.subscribers), len(self.behind)

    def close_all(self, reason: CloseReason) -> None:
        for subscriber in (*self.subscribers, *self.behind, *self._waiting):
            self.unsubscribe(subscriber)
            subscriber.close(reason)

    def attach_caught_up(self) -> None:
        """Attach the waiting subscribers no channel is behind any more."""
        for subscriber, (cursor, timer) in tuple(self._waiting.items()):
            if not any(self._ahead(cursor)):
                timer.cancel()
                del self._waiting[subscriber]
                self._attach(subscriber, cursor)

    def _register(self) -> None:
        # A view whose streams all ended while this one caught up has left the
        # registry; another may have taken its place there: this one still serves.
        self._registry.setdefault(self.subscription, self)
        for channel in self.channels:
            channel.views[self] = None

    def _unregister(self) -> None:
        if self._registry.get(self.subscription) is self:
            del self._registry[self.subscription]
        for channel in self.channels:
            channel.views.pop(self, None)

    def _ahead(self, cursor: Cursor) -> list[list[tuple[int, int, int]]]:
        """Per channel: (partition, requested, live position) where the cursor is past it."""
        return [
            [(p, requested, end) for p, requested in enumerate(own) if requested > (end := offset(channel, p))]
            for channel, own in zip(self.channels, cursor, strict=True)
        ]

    def _attach(self, subscriber: Subscriber, cursor: Cursor | None, notices: Sequence[bytes] = ()) -> None:
        subscriber.push_backlog(notices)
        if cursor is None:
            self.subscribers.add(subscriber)
            if self.filter:
                subscriber.live_id = self.current_id
            return
        # Fed from the rings' oldest entries on, each past the cursor (which may be
        # another replica's, ahead of this one in some partitions), then live.
        seqs = [channel.ring.first_seq for channel in self.channels]
        behind = Behind(self, subscriber, seqs, cursor)
        if not self.replayable(cursor):  # only after waiting: a ring moved past the cursor meanwhile
            self.leave_rings(behind)
            return
        self._follow(behind)

    def event(
        self, index: int, record: KafkaRecord, id: str, parsed: ParsedRecord | None = None, entry: Entry | None = None
    ) -> bytes:
        """The event of one record of ``self.channels[index]`` with ``id``; ``parsed``
        if the filter already parsed it, ``entry`` if the ring holds its frame."""
        channel = self.channels[index]
        if self.subscription.format is Format.ENVELOPE:
            parsed = parsed if parsed is not None else ParsedRecord(record)
            return envelope_event(channel.topic, parsed, id=id, type_header=channel.type_header)
        if entry is not None:
            return b"id: " + id.encode() + b"\n" + raw_body(entry.frame)
        return record_event(record, id=id, type_header=channel.type_header)

    def _give_up(self, subscriber: Subscriber) -> None:
        cursor, _ = self._waiting.pop(subscriber)
        notices = [reset_event(c.topic, ahead) for c, ahead in zip(self.channels, self._ahead(cursor), strict=True)
                   if ahead]  # fmt: skip
        clamped = tuple(
            tuple(min(requested, offset(channel, p)) for p, requested in enumerate(own))[: len(channel.position)]
            for channel, own in zip(self.channels, cursor, strict=True)
        )
        self._attach(subscriber, clamped, notices)


def offset(channel: Channel, partition: int) -> int:
    return cursors.offset_for(channel.position, partition)
