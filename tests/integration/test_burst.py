"""A burst on a wide topic ends no stream: 20 fast clients and 5 slow ones (about 50 KB/s) get
every record of a 50,000-record burst on a 128-partition topic exactly once, in order per
partition; the slow ones fall behind, are caught up in place (the ring, then Kafka) on
the same connection and go live again; the bridge's memory grows by the ring and a
small amount per stream, not by the burst times the streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from bridge.kafka.catchup import FETCH_BYTES
from tests.support.bridgeproc import rss_mb
from tests.support.cluster import Cluster, unique_topic
from tests.support.pacedreader import PacedReader, numbered_burst
from tests.support.scrape import eventually, scrape

pytestmark = pytest.mark.kafka

PARTITIONS = 128
BURST = 50_000
VALUE_BYTES = 420  # the values alone are 21 MB: at least 20 MB of events whatever the ids' length
FAST, SLOW = 20, 5
SLOW_RATE = 50_000  # bytes per second
SLOW_SECONDS = 12  # then their connection gets better: they read as fast as they can
OUTBOX_BYTES = 1024 * 1024
MAX_CATCHUPS = 4
# The default bound: with 5 s all five slow readers were cut at once here, the test process's
# own loop (busy parsing 20 fast streams on a shared machine) not reading them for that long.
STALLED_SECONDS = 30


async def test_a_burst_ends_no_stream_and_slow_clients_are_caught_up_in_place(
    start_bridge: Callable[..., Any], cluster: Cluster
) -> None:
    topic = await cluster.create_topic(unique_topic("burst"), partitions=PARTITIONS)
    bridge = await start_bridge(outbox_bytes=str(OUTBOX_BYTES), stalled_client_seconds=str(STALLED_SECONDS),
                                max_catchups=str(MAX_CATCHUPS))  # fmt: skip
    await bridge.wait_for_topic(topic, PARTITIONS)
    assert bridge.process is not None
    pid = bridge.process.pid
    fast = [PacedReader(bridge.url, topic, PARTITIONS) for _ in range(FAST)]
    slow = [PacedReader(bridge.url, topic, PARTITIONS, rate=SLOW_RATE) for _ in range(SLOW)]
    readers = [asyncio.create_task(reader.run()) for reader in (*fast, *slow)]
    try:
        await eventually(bridge, lambda m: m.value("subscribers_live", topic=topic) == FAST + SLOW)
        rss_before = rss_mb(pid)
        started = time.monotonic()
        await cluster.produce(topic, numbered_burst(BURST, PARTITIONS, VALUE_BYTES), partitions=PARTITIONS)
        await until(lambda: all(reader.received == BURST for reader in fast), 60, "fast clients got the burst")
        fast_done = time.monotonic() - started
        behind = await scrape(bridge)  # the slow ones, still reading at their pace
        await asyncio.sleep(max(0.0, started + SLOW_SECONDS - time.monotonic()))
        for reader in slow:
            reader.unpace()
        await until(lambda: all(reader.received == BURST for reader in slow), 60, "slow clients got the burst")
        # live again: a record produced now reaches everyone from the live path
        await cluster.produce(topic, numbered_burst(BURST + PARTITIONS, PARTITIONS, VALUE_BYTES)[BURST:],
                              partitions=PARTITIONS)  # fmt: skip
        total = BURST + PARTITIONS
        await until(lambda: all(reader.received == total for reader in (*fast, *slow)), 30, "everyone got the tail")
        metrics = await eventually(bridge, lambda m: m.value("subscribers_live", topic=topic) == FAST + SLOW)
        peak_growth = rss_mb(pid, "VmHWM") - rss_before
        ring_mb = (metrics.value("rings_memory_bytes") or 0) / 2**20
    finally:
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for reader in (*fast, *slow):
        assert reader.disorder == []
        assert not reader.ended  # no stream was ended: each read every record on its first connection
    event_mb = slow[0].event_bytes / 1e6
    assert event_mb >= 20
    assert metrics.value("streams_closed_total", topic=topic, reason="slow") == 0
    assert metrics.value("streams_opened_total", topic=topic) == FAST + SLOW
    for source in ("ring", "kafka"):
        assert metrics.value("subscribers_behind", topic=topic, source=source) == 0
    # each slow one fell behind (and came back); while they read at their pace they were off the live path
    assert (metrics.value("fell_behind_total", topic=topic) or 0) >= SLOW
    assert metrics.value("rejoined_live_total", topic=topic) == metrics.value("fell_behind_total", topic=topic)
    assert sum(behind.value("subscribers_behind", topic=topic, source=source) or 0
               for source in ("ring", "kafka")) >= SLOW  # fmt: skip
    # The bound: the rings' memory as they count it, the live consumer's fetch of the whole
    # burst at most (its raw values), per stream what its outbox queues and what its writer
    # hands the connection (the bound each) plus the connection's 64 KiB, per catch-up
    # slot its fetch three times over (raw, parsed records, encoded events), and the
    # allocator's slack. Without the outbox bound, the 25 streams' share of a burst
    # the slow ones cannot take would be theirs to hold: 25 x 47 MB.
    streams_mb = (FAST + SLOW) * (2 * OUTBOX_BYTES + 64 * 1024) / 2**20
    bound_mb = ring_mb + BURST * VALUE_BYTES / 2**20 + streams_mb + MAX_CATCHUPS * 3 * FETCH_BYTES / 2**20 + 40
    print(f"{event_mb:.0f} MB of events per client; fast clients had it all after {fast_done:.1f} s; "
          f"RSS grew by {peak_growth:.0f} MB at peak (bound {bound_mb:.0f} MB: ring {ring_mb:.0f} MB)")  # fmt: skip
    assert peak_growth < bound_mb


async def until(check: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what if isinstance(what, str) else what()}"
        await asyncio.sleep(0.1)
