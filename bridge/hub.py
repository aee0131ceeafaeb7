"""Fan-out: one channel per topic, records encoded once, one append per subscriber per batch.

The Kafka reader calls :meth:`Channel.publish` with a batch; the channel
encodes each record once, keeps it in the ring and appends the batch's bytes
to every subscriber's outbox as one chunk. Publishing never awaits, so a slow
browser can never hold up the reader or another browser: a subscriber whose
outbox would pass its byte bound is closed instead, and its browser resumes
from its last id.

Everything here runs on the event loop thread and nothing here awaits while
it changes state, so subscribing (replay, then live) is atomic with respect to
publishing: no record can fall between the replay and the live stream.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bridge import cursor as cursors
from bridge.events import KafkaRecord, record_event, reset_event
from bridge.ring import Entry, RingBuffer

REPLAY_CHUNK_BYTES = 64 * 1024
AHEAD_WAIT_SECONDS = 5.0


class CloseReason(enum.Enum):
    CLIENT_LEFT = "client_left"
    SLOW = "slow"
    SHUTDOWN = "shutdown"
    ERROR = "error"  # the bridge could not serve it (catch-up failed); it reconnects
    TOKEN_EXPIRED = "token_expired"  # its token ended: told with a reauth event, it reconnects with a new one


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


class Subscriber:
    """One stream's outbox: what the channel has handed over and the
    connection has not yet written."""

    __slots__ = ("_backlog", "_chunks", "_drain_waiter", "_size", "_waiter", "closed", "limit", "reason")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._backlog: list[bytes] = []  # replay and notices, written before live data
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.reason: CloseReason | None = None
        self.closed: asyncio.Future[CloseReason] = asyncio.get_running_loop().create_future()

    def _wake(self) -> None:
        if self._waiter is not None:
            _release(self._waiter)

    def push(self, chunk: bytes) -> None:
        if self.reason is not None:
            return
        # An empty outbox is not behind, however large the batch handed to it.
        if self._chunks and self._size + len(chunk) > self.limit:
            self.close(CloseReason.SLOW)
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._wake()

    def push_backlog(self, frames: Iterable[bytes]) -> None:
        """Replay is not held against the outbox bound: it is shared ring
        memory, and the client cannot have fallen behind it yet."""
        if self.reason is not None:
            return
        self._backlog.extend(frames)
        self._wake()

    def close(self, reason: CloseReason) -> CloseReason:
        """Close for ``reason``, unless already closed; the reason it closed for."""
        if self.reason is not None:
            return self.reason
        self.reason = reason
        self._chunks.clear()
        self._backlog.clear()
        self._size = 0
        self.closed.set_result(reason)
        self._wake()
        if self._drain_waiter is not None:
            _release(self._drain_waiter)
        return reason

    async def take(self, timeout: float) -> bytes | None:
        """The next bytes to write: b"" after ``timeout`` idle seconds (time
        for a heartbeat), None once closed."""
        if not self._backlog and not self._chunks and self.reason is None:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _release, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self.reason is not None:
            return None
        if self._backlog:
            return self._take_backlog()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return data

    def _take_backlog(self) -> bytes:
        size = count = 0
        for frame in self._backlog:
            size += len(frame)
            count += 1
            if size >= REPLAY_CHUNK_BYTES:
                break
        data = b"".join(self._backlog[:count])
        del self._backlog[:count]
        if not self._backlog and self._drain_waiter is not None:
            _release(self._drain_waiter)
        return data

    async def drained(self) -> None:
        """Until the connection has taken the whole backlog (or is closed):
        lets a catch-up read no faster than its client."""
        if self._backlog and self.reason is None:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Channel:
    """One served topic: its position, its ring, its subscribers and its counters."""

    def __init__(self, topic: str, start: Sequence[int], *, ring_records: int, ring_bytes: int,
                 type_header: str | None, ahead_wait: float = AHEAD_WAIT_SECONDS) -> None:  # fmt: skip
        self.topic = topic
        self.ahead_wait = ahead_wait
        self.position = list(start)
        self.ring = RingBuffer(start, max_records=ring_records, max_bytes=ring_bytes)
        self.type_header = type_header
        self.subscribers: set[Subscriber] = set()
        self.stats = TopicStats()
        self._waiting: dict[Subscriber, tuple[Sequence[int], asyncio.TimerHandle]] = {}

    def add_partitions(self, starts: Sequence[int]) -> None:
        self.position.extend(starts)
        self.ring.add_partitions(starts)
        self._attach_caught_up()

    def publish(self, records: Sequence[KafkaRecord]) -> None:
        frames = []
        for record in records:
            self.position[record.partition] = record.offset + 1
            position = tuple(self.position)
            frame = record_event(record, id=cursors.encode(position), type_header=self.type_header)
            frames.append(frame)
            self.ring.append(Entry(record.partition, record.offset, position, frame, record.timestamp))
        if frames and self.subscribers:
            chunk = b"".join(frames)
            for subscriber in tuple(self.subscribers):
                subscriber.push(chunk)
                if subscriber.reason is not None:
                    self.subscribers.discard(subscriber)
            # Those still here took the chunk: counted once per batch, not per subscriber.
            self.stats.events_delivered += len(frames) * len(self.subscribers)
        # After the fan-out: a client the batch brings level replays it from the
        # ring, so it must not get the live chunk as well.
        if self._waiting:
            self._attach_caught_up()

    def subscribe(self, subscriber: Subscriber, cursor: Sequence[int] | None) -> None:
        """Replay what ``cursor`` has not seen, then go live.

        The ring must cover the cursor (``ring.uncovered(cursor)`` is empty);
        a client from further back catches up from Kafka first (catchup.py).
        A cursor ahead of this channel (another replica read further, or this
        one has not yet seen a new partition) waits, stream open, until the
        channel gets there; if it does not within ``ahead_wait`` seconds the
        offsets do not exist (a forged id, a recreated topic): a ``reset``
        event says so and those partitions go on from the live position.
        """
        if cursor is not None and self._ahead(cursor):
            timer = asyncio.get_running_loop().call_later(self.ahead_wait, self._give_up, subscriber)
            self._waiting[subscriber] = (cursor, timer)
            return
        self._attach(subscriber, cursor)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        waiting = self._waiting.pop(subscriber, None)
        if waiting is not None:
            waiting[1].cancel()

    def close_all(self, reason: CloseReason) -> None:
        for subscriber in (*self.subscribers, *self._waiting):
            self.unsubscribe(subscriber)
            subscriber.close(reason)

    def _ahead(self, cursor: Sequence[int]) -> list[tuple[int, int, int]]:
        return [
            (partition, requested, cursors.offset_for(self.position, partition))
            for partition, requested in enumerate(cursor)
            if requested > cursors.offset_for(self.position, partition)
        ]

    def _attach(self, subscriber: Subscriber, cursor: Sequence[int] | None, notices: Sequence[bytes] = ()) -> None:
        if cursor is not None and self.ring.uncovered(cursor):
            # Only after waiting: the ring moved past the cursor meanwhile. The
            # client reconnects with the same id and catches up from Kafka.
            subscriber.close(CloseReason.ERROR)
            return
        backlog = list(notices)
        if cursor is not None:
            replayed = [_replayed_frame(entry, cursor) for entry in self.ring.replay(cursor)]
            self.stats.events_delivered += len(replayed)
            backlog.extend(replayed)
        subscriber.push_backlog(backlog)
        self.subscribers.add(subscriber)

    def _attach_caught_up(self) -> None:
        for subscriber, (cursor, timer) in tuple(self._waiting.items()):
            if not self._ahead(cursor):
                timer.cancel()
                del self._waiting[subscriber]
                self._attach(subscriber, cursor)

    def _give_up(self, subscriber: Subscriber) -> None:
        cursor, _ = self._waiting.pop(subscriber)
        ahead = self._ahead(cursor)
        clamped = [min(requested, cursors.offset_for(self.position, p)) for p, requested in enumerate(cursor)]
        self._attach(subscriber, clamped[: len(self.position)], [reset_event(self.topic, ahead)])


def _replayed_frame(entry: Entry, cursor: Sequence[int]) -> bytes:
    if all(cursors.offset_for(cursor, p) <= offset for p, offset in enumerate(entry.position)):
        return entry.frame
    # Another replica's cursor is ahead of this one in some partition: keep
    # the client's offsets there, so its last id never goes backwards.
    merged = [max(offset, cursors.offset_for(cursor, p)) for p, offset in enumerate(entry.position)]
    body = entry.frame[entry.frame.index(b"\n") + 1 :]
    return b"id: " + cursors.encode(merged).encode() + b"\n" + body


class Hub:
    """The channels of every served topic."""

    def __init__(self, *, ring_records: int, ring_bytes: int, type_header: str | None,
                 ahead_wait: float = AHEAD_WAIT_SECONDS) -> None:  # fmt: skip
        self.channels: dict[str, Channel] = {}
        self._ahead_wait = ahead_wait
        self._ring_records = ring_records
        self._ring_bytes = ring_bytes
        self._type_header = type_header

    def open_channel(self, topic: str, start: Sequence[int]) -> Channel:
        channel = Channel(topic, start, ring_records=self._ring_records, ring_bytes=self._ring_bytes,
                          type_header=self._type_header, ahead_wait=self._ahead_wait)  # fmt: skip
        self.channels[topic] = channel
        return channel

    def close_all(self, reason: CloseReason) -> None:
        for channel in self.channels.values():
            channel.close_all(reason)
