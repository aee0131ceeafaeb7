"""The stall rule: a client is stalled once it took no bytes for the bound while some waited for it."""

from __future__ import annotations

import asyncio

from bridge.http.stall import Progress, StallWatch

BOUND = 30.0


def test_a_client_that_takes_bytes_however_slowly_is_never_stalled() -> None:
    progress = Progress(BOUND, now=0)
    unsent = 4_000_000
    for second in range(1, 600):
        unsent -= 1000  # a kilobyte a second
        assert not progress.look(second, unsent)


def test_a_client_that_takes_nothing_is_stalled_after_the_bound() -> None:
    progress = Progress(BOUND, now=0)
    progress.look(0, 200_000)
    assert not progress.look(BOUND - 1, 200_000)
    assert progress.look(BOUND, 200_000)


def test_writes_to_a_client_that_takes_nothing_are_no_progress() -> None:
    progress = Progress(BOUND, now=0)
    unsent = 100
    for second in range(1, 40):
        unsent += 65_536 + 10  # a piece and its chunk framing, none of it taken
        stalled = progress.look(second, unsent, added=65_536)
        assert stalled is (second >= BOUND)


def test_a_client_with_nothing_waiting_for_it_is_not_stalled() -> None:
    progress = Progress(BOUND, now=0)
    assert not any(progress.look(second, 0) for second in range(0, 1000, 7))
    assert not progress.waiting


def test_without_a_byte_count_a_write_blocked_for_the_bound_is_a_stall() -> None:
    progress = Progress(BOUND, now=0)
    progress.sending = True
    assert not progress.look(10, int(progress.sending))
    progress.sending = False
    assert not progress.look(20, int(progress.sending))  # it completed: the client took bytes
    progress.sending = True
    assert not progress.look(49, 1)
    assert progress.look(50, 1)


async def test_the_watch_cuts_a_stalled_client_once_and_only_while_bytes_wait() -> None:
    stalled: list[float] = []
    unsent = [0]
    watch = StallWatch(0.2, lambda: unsent[0], lambda: stalled.append(asyncio.get_running_loop().time()))
    watch.before_send()
    unsent[0] = 1000
    watch.after_send(1000)
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(0.4)
    assert len(stalled) == 1
    assert 0.2 <= stalled[0] - started < 0.3
    watch.stop()
