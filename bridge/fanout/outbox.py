"""A stream's outbox: what the hub has handed over and the connection has not yet written.

Pushing never awaits and never passes the byte bound: a live chunk that does
not fit is not queued, the subscriber leaves the live path instead
(views.py), holding only its position, and is fed from there at the pace the
connection takes its bytes (behind.py) until it is level and rejoins.

A chunk pushed while the stream's writer waits with nothing queued is
written at once (``write_now``, the connection's, http/stream.py) when the
connection can take it without waiting: a batch then reaches a thousand
sockets in one pass of the publish, instead of waking a thousand writer
tasks that each run a turn of the event loop later. Anything else (a paused
transport, bytes already queued, a chunk over the bound) is queued for the
writer, so the order of bytes never changes.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from typing import Protocol

# Bytes per take of catch-up frames, and of a behind subscriber's feed: small, as
# each is the subscriber's own copy (live chunks are shared by a view's subscribers).
REPLAY_CHUNK_BYTES = 64 * 1024

Cursor = tuple[tuple[int, ...], ...]  # one per topic of a view, in topic-name order


class CloseReason(enum.Enum):
    CLIENT_LEFT = "client_left"
    SLOW = "slow"  # it took no bytes for --stalled-client-seconds (http/stall.py)
    SHUTDOWN = "shutdown"
    ERROR = "error"  # the bridge could not serve it (catch-up failed); it reconnects
    TOKEN_EXPIRED = "token_expired"  # its token ended: told with a reauth event, it reconnects with a new one
    TOPIC_DELETED = "topic_deleted"  # a topic of the stream was deleted: told with a deleted event


class Feed(Protocol):
    """Where a subscriber off the live path takes its next bytes from (behind.Behind)."""

    def next_chunk(self, room: int) -> bytes:
        """At most about ``room`` bytes of events; b"" only once it has rejoined
        the live path or left the rings for Kafka."""
        ...


class Subscriber:
    """One stream's outbox: what the channel has handed over and the
    connection has not yet written."""

    __slots__ = (
        "_backlog", "_chunks", "_drain_waiter", "_loop", "_quiet_since", "_rest", "_size", "_waiter", "catch_up",
        "closed", "feed", "fell", "limit", "live_id", "reason", "write_now",
    )  # fmt: skip

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._backlog: list[bytes] = []  # replay and notices, written before live data
        self._chunks: list[bytes] = []
        self._size = 0
        # Of a take larger than the bound, what is still to be written; already off the outbox's count.
        self._rest = memoryview(b"")
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.reason: CloseReason | None = None
        self._loop = loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[CloseReason] = loop.create_future()
        # Set while live on a filtered stream: its id now, for a heartbeat to
        # carry past the records the filter skipped.
        self.live_id: Callable[[], str] | None = None
        # Set while off the live path and fed from the rings (views.py).
        self.feed: Feed | None = None
        # Called when the rings no longer hold what it needs next: the stream starts
        # a catch-up from Kafka (http/stream.py). Without one it is closed instead.
        self.catch_up: Callable[[Cursor], None] | None = None
        self.fell = False  # off the live path since its outbox was full (not a resume): counted when it rejoins
        # Set while the stream runs: writes bytes to the connection now if it can take them
        # without waiting, and says whether it did.
        self.write_now: Callable[[bytes], bool] | None = None
        self._quiet_since = loop.time()  # the last write: a heartbeat is due ``timeout`` after it

    def _wake(self) -> None:
        if self._waiter is not None:
            _release(self._waiter)

    def room(self) -> int:
        """Live bytes it may still queue."""
        return self.limit - self._size

    def push(self, chunk: bytes) -> bool:
        """Write a live chunk at once or queue it; False, doing neither, if it does not fit."""
        if self.reason is not None:
            return True
        waiter = self._waiter
        # A writer waiting, not woken, has nothing queued before this chunk (backlog, rest, feed included).
        if waiter is not None and not waiter.done() and len(chunk) <= self.limit:
            write_now = self.write_now
            if write_now is not None and write_now(chunk):
                self._quiet_since = self._loop.time()
                return True
        # An empty outbox is not behind, however large the batch handed to it (a batch's chunk is
        # shared by the view's subscribers, and written in pieces of the bound).
        if self._chunks and len(chunk) > self.room():
            return False
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._wake()
        return True

    def follow(self, feed: Feed) -> None:
        """From now on take from ``feed`` once the outbox is empty."""
        self.feed = feed
        self._wake()

    def push_backlog(self, frames: Iterable[bytes]) -> None:
        """Notices and catch-up frames, written before anything else; a
        catch-up pushes no more until they are taken (``drained``)."""
        if self.reason is not None:
            return
        self._backlog.extend(frames)
        self._wake()

    def close(self, reason: CloseReason) -> CloseReason:
        """Close for ``reason``, unless already closed; the reason it closed for."""
        if self.reason is not None:
            return self.reason
        self.reason = reason
        self.feed = None
        self._chunks.clear()
        self._backlog.clear()
        self._size = 0
        self._rest = memoryview(b"")
        self.closed.set_result(reason)
        self._wake()
        if self._drain_waiter is not None:
            _release(self._drain_waiter)
        return reason

    async def take(self, timeout: float) -> bytes | None:
        """The next bytes to write: b"" once nothing was written for ``timeout``
        seconds (time for a heartbeat), None once closed."""
        loop = self._loop
        self._quiet_since = loop.time()  # the writer is back: its last write is done
        due = False
        while self.reason is None:
            data = self._next()
            if data or due:
                return data
            quiet_since = self._quiet_since
            self._waiter = waiter = loop.create_future()
            # The loop's own clock, as its timer's: on a busy loop a timer runs early by the wall clock.
            timer = loop.call_later(quiet_since + timeout - loop.time(), _release, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            due = self._quiet_since == quiet_since  # else written to at once meanwhile: due later
        return None

    def _next(self) -> bytes:
        if self._backlog:
            return self._take_backlog()
        # At most ``limit`` bytes per write: what a write hands the server stays in its buffer
        # until the client reads it, so a stuck client holds no more than its bound there either.
        if self._rest:
            piece, self._rest = self._rest[: self.limit].tobytes(), self._rest[self.limit :]
            return piece
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            if len(data) > self.limit:  # one batch larger than the bound, handed over whole by push
                self._rest = memoryview(data)[self.limit :]
                return data[: self.limit]
            return data
        if self.feed is not None:
            return self.feed.next_chunk(min(self.limit, REPLAY_CHUNK_BYTES))
        return b""

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

    async def drained(self, timeout: float | None = None) -> bool:
        """Until the connection has taken the whole backlog (or is closed), or
        ``timeout`` seconds; whether it has: lets a catch-up read no faster than its client."""
        if self._backlog and self.reason is None:
            if self._drain_waiter is None:
                self._drain_waiter = asyncio.get_running_loop().create_future()
            waiter = self._drain_waiter
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                return False
            finally:
                if waiter.done() and self._drain_waiter is waiter:
                    self._drain_waiter = None
        return True


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
