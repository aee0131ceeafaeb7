"""A subscriber's outbox writes a live chunk at once while its writer waits with nothing queued, and
queues it otherwise: the bytes reach the connection in the order they were pushed either way."""

from __future__ import annotations

import asyncio
import time

from bridge.fanout.outbox import CloseReason, Subscriber


class Connection:
    """What ``write_now`` sees: the bytes written at once, and whether it may write (not paused)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.can_take = True

    def write(self, data: bytes) -> bool:
        if self.can_take:
            self.written.append(data)
        return self.can_take


async def waiting_writer(subscriber: Subscriber, connection: Connection, timeout: float = 5) -> asyncio.Task[None]:
    """A writer as the stream runs it, writing what it takes to ``connection`` (b"" is a heartbeat)."""

    async def write() -> None:
        while (data := await subscriber.take(timeout)) is not None:
            connection.written.append(data or b"heartbeat")

    task = asyncio.create_task(write())
    await asyncio.sleep(0)  # it takes, finds nothing and waits
    return task


async def test_a_chunk_pushed_while_the_writer_waits_is_written_at_once() -> None:
    subscriber, connection = Subscriber(limit=1000), Connection()
    subscriber.write_now = connection.write
    writer = await waiting_writer(subscriber, connection)
    assert subscriber.push(b"a")
    assert connection.written == [b"a"]  # before any other task ran
    assert subscriber.room() == 1000  # nothing queued
    subscriber.close(CloseReason.CLIENT_LEFT)
    await writer  # a closed outbox ends its writer


async def test_a_connection_that_cannot_take_it_now_gets_it_from_the_writer_in_order() -> None:
    subscriber, connection = Subscriber(limit=1000), Connection()
    subscriber.write_now = connection.write
    writer = await waiting_writer(subscriber, connection)
    connection.can_take = False
    assert subscriber.push(b"a")
    connection.can_take = True
    assert subscriber.push(b"b")  # the writer is woken for "a": "b" must not pass it
    assert connection.written == []
    await asyncio.sleep(0)
    assert connection.written == [b"ab"]
    assert subscriber.push(b"c")  # waiting again, nothing queued: at once
    assert connection.written == [b"ab", b"c"]
    writer.cancel()


async def test_a_chunk_over_the_bound_goes_to_the_writer_in_pieces() -> None:
    subscriber, connection = Subscriber(limit=4), Connection()
    subscriber.write_now = connection.write
    writer = await waiting_writer(subscriber, connection)
    assert subscriber.push(b"abcdefghij")
    assert connection.written == []
    await asyncio.sleep(0.01)
    assert connection.written == [b"abcd", b"efgh", b"ij"]
    writer.cancel()


async def test_writes_at_once_put_the_heartbeat_off() -> None:
    subscriber, connection = Subscriber(limit=1000), Connection()
    subscriber.write_now = connection.write
    writer = await waiting_writer(subscriber, connection, timeout=0.2)
    for _ in range(6):
        await asyncio.sleep(0.05)
        assert subscriber.push(b"x")
    last = time.monotonic()
    assert b"heartbeat" not in connection.written  # 0.3 s of writes every 0.05 s: never idle for 0.2
    async with asyncio.timeout(2):
        while b"heartbeat" not in connection.written:  # noqa: ASYNC110 (the writer's own record is checked)
            await asyncio.sleep(0.01)
    assert time.monotonic() - last >= 0.19  # due 0.2 s after the last write, not after the writer began waiting
    writer.cancel()
