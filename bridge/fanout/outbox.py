"""A stream's outbox: what the hub has handed over and the connection has not yet written.

Pushing never awaits: an outbox that would pass its byte bound closes
instead, and its browser resumes from its last id.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable

REPLAY_CHUNK_BYTES = 64 * 1024


class CloseReason(enum.Enum):
    CLIENT_LEFT = "client_left"
    SLOW = "slow"
    SHUTDOWN = "shutdown"
    ERROR = "error"  # the bridge could not serve it (catch-up failed); it reconnects
    TOKEN_EXPIRED = "token_expired"  # its token ended: told with a reauth event, it reconnects with a new one
    TOPIC_DELETED = "topic_deleted"  # a topic of the stream was deleted: told with a deleted event


class Subscriber:
    """One stream's outbox: what the channel has handed over and the
    connection has not yet written."""

    __slots__ = (
        "_backlog", "_chunks", "_drain_waiter", "_rest", "_size", "_waiter", "closed", "limit", "live_id", "reason",
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
        self.closed: asyncio.Future[CloseReason] = asyncio.get_running_loop().create_future()
        # Set while live on a filtered stream: its id now, for a heartbeat to
        # carry past the records the filter skipped.
        self.live_id: Callable[[], str] | None = None

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
        self._rest = memoryview(b"")
        self.closed.set_result(reason)
        self._wake()
        if self._drain_waiter is not None:
            _release(self._drain_waiter)
        return reason

    async def take(self, timeout: float) -> bytes | None:
        """The next bytes to write: b"" after ``timeout`` idle seconds (time
        for a heartbeat), None once closed."""
        if not self._backlog and not self._chunks and not self._rest and self.reason is None:
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
        # At most ``limit`` bytes per write: what a write hands the server stays in its buffer
        # until the client reads it, so a stuck client holds no more than its bound there either.
        if self._rest:
            piece, self._rest = self._rest[: self.limit].tobytes(), self._rest[self.limit :]
            return piece
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if len(data) > self.limit:  # one batch larger than the bound, handed over whole by push
            self._rest = memoryview(data)[self.limit :]
            return data[: self.limit]
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
