"""Ending every open stream on shutdown, spread over a drain period.

Ended all at once, a replica's browsers would all reconnect to the others in
the same second (each with a resume to serve). Ended in an even trickle over
``--drain-seconds``, the next replicas see a steady trickle instead: stream
``i`` of ``n`` ends at ``i * seconds / n``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bridge.fanout.outbox import CloseReason, Subscriber

# Streams due are ended together at most this often: thousands of streams need no thousands of timers.
TICK_SECONDS = 0.01


async def drain(
    open_streams: Callable[[], Sequence[Subscriber]], end_streams: Callable[[CloseReason], None], seconds: float
) -> None:
    """End the streams ``open_streams()`` returns, evenly over ``seconds``,
    then (``end_streams``) any that started meanwhile."""
    streams = list(open_streams())
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended = 0
    while ended < len(streams):
        elapsed = loop.time() - started
        due = len(streams) if seconds <= 0 else min(len(streams), int(elapsed / seconds * len(streams)) + 1)
        for subscriber in streams[ended:due]:
            subscriber.close(CloseReason.SHUTDOWN)
        ended = due
        if ended < len(streams):
            await asyncio.sleep(max(TICK_SECONDS, started + ended * seconds / len(streams) - loop.time()))
    end_streams(CloseReason.SHUTDOWN)
