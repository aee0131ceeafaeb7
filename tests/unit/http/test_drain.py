from __future__ import annotations

import asyncio

from bridge.fanout.outbox import CloseReason, Subscriber
from bridge.http.drain import drain


async def test_streams_end_evenly_over_the_drain_period() -> None:
    loop = asyncio.get_running_loop()
    streams = [Subscriber(1024) for _ in range(50)]
    late = Subscriber(1024)  # a stream that started while the drain ran
    ended_at: list[float] = []
    for subscriber in streams:
        subscriber.closed.add_done_callback(lambda _: ended_at.append(loop.time()))

    def end_streams(reason: CloseReason) -> None:
        late.close(reason)

    started = loop.time()
    await drain(lambda: streams, end_streams, 1.0)
    took = loop.time() - started
    offsets = [at - started for at in ended_at]
    assert all(subscriber.reason is CloseReason.SHUTDOWN for subscriber in [*streams, late])
    assert offsets[0] < 0.1
    assert 0.9 <= offsets[-1] <= 1.2
    assert 0.9 <= took <= 1.3
    # no burst: in every tenth of the period about a tenth of the streams end
    for tenth in range(10):
        count = sum(tenth / 10 <= offset < (tenth + 1) / 10 for offset in offsets)
        assert 2 <= count <= 9, (tenth, count)


async def test_without_a_drain_period_every_stream_ends_at_once() -> None:
    streams = [Subscriber(1024) for _ in range(5)]
    await asyncio.wait_for(drain(lambda: streams, lambda reason: None, 0), 0.05)
    assert all(subscriber.reason is CloseReason.SHUTDOWN for subscriber in streams)
