"""A topic is read only while it is watched: assigned on its first stream,
released a linger after its last; the others' streams never notice."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson
import pytest

from tests.support.bridgeproc import BridgeProcess, Stream, open_sse, open_stream
from tests.support.cluster import Cluster, unique_topic
from tests.support.scrape import eventually, scrape
from tests.support.sseparse import Event

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]


def numbered(start: int, count: int) -> list[bytes]:
    return [orjson.dumps({"n": n}) for n in range(start, start + count)]


async def served(bridge: BridgeProcess) -> dict[str, dict[str, object]]:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        return {entry["topic"]: entry for entry in (await client.get("/topics")).json()["topics"]}


class Produced:
    """Every record sent to one topic: its (partition, offset) by value."""

    def __init__(self, cluster: Cluster, topic: str) -> None:
        self.cluster = cluster
        self.topic = topic
        self.at: dict[str, tuple[int, int]] = {}

    async def send(self, start: int, count: int) -> None:
        values = numbered(start, count)
        for value, where in zip(values, await self.cluster.produce(self.topic, values), strict=True):
            self.at[value.decode()] = where

    def offsets(self, events: Sequence[Event]) -> dict[int, list[int]]:
        """The offsets the events carried, per partition, in the order they came."""
        per_partition: dict[int, list[int]] = defaultdict(list)
        for event in events:
            partition, offset = self.at[event.data]
            per_partition[partition].append(offset)
        return dict(per_partition)

    def from_cursor(self, cursor: Sequence[int]) -> dict[int, list[int]]:
        """Every offset produced at or after ``cursor``, per partition."""
        ends: dict[int, int] = defaultdict(int)
        for partition, offset in self.at.values():
            ends[partition] = max(ends[partition], offset + 1)
        return {p: list(range(cursor[p], end)) for p, end in sorted(ends.items()) if end > cursor[p]}


async def test_a_topic_is_read_only_while_watched_then_released_after_the_linger(
    start_bridge: StartBridge, cluster: Cluster, topic: str
) -> None:
    bridge: BridgeProcess = await start_bridge(linger_seconds="1")
    await bridge.wait_for_topic(topic, 3)
    await cluster.produce(topic, numbered(0, 30))
    assert (await served(bridge))[topic] == {
        "topic": topic, "partitions": 3, "read": False, "position": None, "end_offsets": None, "event_types": []
    }  # fmt: skip
    assert (await scrape(bridge)).value("records_consumed_total", topic=topic) is None  # never read
    async with open_stream(bridge.url, topic) as client:
        assert (await served(bridge))[topic]["position"] == [10, 10, 10]  # from the live end
        await cluster.produce(topic, numbered(30, 6))
        assert sorted(event.data for event in await client.events(6)) == sorted(v.decode() for v in numbered(30, 6))
        watched = await scrape(bridge)
        assert watched.value("topics_watched") == 1
        assert watched.value("topic_assignments_total") == 1
        assert (watched.value("rings_memory_bytes") or 0) > 6 * 200
    released = await eventually(bridge, lambda m: m.value("topic_releases_total") == 1)
    assert (released.value("topics_read"), released.value("topics_watched")) == (0, 0)
    assert released.value("rings_memory_bytes") == 0
    assert released.value("rings_memory_budget_bytes") == 512 * 1024 * 1024
    assert (await served(bridge))[topic]["read"] is False
    await cluster.produce(topic, numbered(36, 30))
    await asyncio.sleep(1)  # several fetch waits: a consumer still reading it would have read them
    assert (await scrape(bridge)).value("records_consumed_total", topic=topic) == 6  # the counter outlives the channel


async def test_the_first_stream_of_an_unwatched_topic_resumes_exactly_from_its_id(
    start_bridge: StartBridge, cluster: Cluster, topic: str
) -> None:
    """The ring is empty: the stream catches up from Kafka while records keep
    coming, and hands over to the live channel with no gap and no duplicate."""
    bridge: BridgeProcess = await start_bridge()
    await bridge.wait_for_topic(topic, 3)
    produced = Produced(cluster, topic)
    await produced.send(0, 60)
    async with open_stream(bridge.url, topic, last_event_id="5.5.5") as client:
        for start in range(60, 300, 40):  # while it catches up and after
            await produced.send(start, 40)
        events = await client.events(300 - 15)
    assert produced.offsets(events) == produced.from_cursor((5, 5, 5))
    metrics = await scrape(bridge)
    assert metrics.value("resumes_total", topic=topic, kind="kafka") == 1


async def test_several_unwatched_topics_start_together_since_the_earliest_record(
    start_bridge: StartBridge, cluster: Cluster
) -> None:
    first = await cluster.create_topic(unique_topic("since-a"))
    second = await cluster.create_topic(unique_topic("since-b"))
    bridge: BridgeProcess = await start_bridge()
    await bridge.wait_for_topic(second, 3)
    await cluster.produce(first, numbered(0, 9))
    await cluster.produce(second, numbered(100, 9))
    params = [("topic", first), ("topic", second), ("since", "earliest")]
    async with open_sse(bridge.url, "/sse", params=params) as client:
        await cluster.produce(first, numbered(9, 3))
        events = await client.events(21)
    assert sorted(orjson.loads(event.data)["n"] for event in events) == [*range(12), *range(100, 109)]
    now = await served(bridge)
    assert now[first]["read"] is now[second]["read"] is True


async def watch_briefly(bridge: BridgeProcess, cluster: Cluster, topic: str, n: int) -> None:
    """A stream on ``topic`` that gets the one record produced once it is open, then ends."""
    async with open_stream(bridge.url, topic) as client:
        await cluster.produce(topic, numbered(n, 1))
        assert orjson.loads((await client.next_event()).data)["n"] == n


async def test_watching_and_releasing_other_topics_never_disturbs_a_busy_stream(
    start_bridge: StartBridge, cluster: Cluster, topic: str
) -> None:
    others = [await cluster.create_topic(unique_topic(f"other{n}")) for n in range(5)]
    bridge: BridgeProcess = await start_bridge(linger_seconds="1")
    await bridge.wait_for_topic(others[-1], 3)
    produced = Produced(cluster, topic)
    received: list[tuple[float, Event]] = []

    async def read_all(client: Stream, count: int) -> None:
        for _ in range(count):
            received.append((time.monotonic(), await client.next_event(timeout=20)))

    batches, per_batch = 60, 40
    async with open_stream(bridge.url, topic) as busy:
        reading = asyncio.create_task(read_all(busy, batches * per_batch))
        churn_done = asyncio.Event()

        async def churn() -> None:
            round_ = 0
            while not churn_done.is_set():
                await asyncio.gather(*(watch_briefly(bridge, cluster, other, round_) for other in others))
                round_ += 1
                await asyncio.sleep(1.1)  # past the linger: every other topic is released, then read again

        churning = asyncio.create_task(churn())
        for batch in range(batches):
            await produced.send(batch * per_batch, per_batch)
            await asyncio.sleep(0.05)
        await reading
        churn_done.set()
        await churning
    assert produced.offsets([event for _, event in received]) == produced.from_cursor((0, 0, 0))
    arrivals = [at for at, _ in received]
    assert max(b - a for a, b in itertools.pairwise(arrivals)) < 5  # no stall: seconds, not tens
    metrics = await scrape(bridge)
    assert (metrics.value("topic_releases_total") or 0) >= len(others)  # at least one release of each
    assert (metrics.value("topic_assignments_total") or 0) >= 1 + 2 * len(others)
    assert metrics.value("consumer_restarts_total") == 0


async def test_opening_and_closing_streams_fast_assigns_each_topic_once_per_linger(
    start_bridge: StartBridge, cluster: Cluster
) -> None:
    topics = [await cluster.create_topic(unique_topic(f"churn{n}")) for n in range(5)]
    bridge: BridgeProcess = await start_bridge(linger_seconds="60")
    await bridge.wait_for_topic(topics[-1], 3)
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as client:
        for _ in range(4):
            for name in topics:
                async with client.stream("GET", f"/sse/{name}") as response:
                    assert response.status_code == 200
    metrics = await eventually(bridge, lambda m: m.value("topics_watched") == 0)
    assert metrics.value("topic_assignments_total") == len(topics)
    assert metrics.value("topic_releases_total") == 0
    assert metrics.value("topics_read") == len(topics)


async def test_a_stream_that_comes_as_its_topic_is_released_resumes_exactly(
    start_bridge: StartBridge, cluster: Cluster, topic: str
) -> None:
    """Streams come just before, at and just after the end of the linger:
    each resumes from the last id, gets exactly the next record, nothing twice."""
    linger = 1.0
    bridge: BridgeProcess = await start_bridge(linger_seconds=str(linger))
    await bridge.wait_for_topic(topic, 3)
    last_id = None
    for n, offset in enumerate((-0.2, -0.1, -0.05, 0.0, 0.0, 0.02, 0.05, 0.1, 0.2)):
        async with open_stream(bridge.url, topic, last_event_id=last_id) as client:
            await cluster.produce(topic, numbered(n, 1))
            event = await client.next_event()
            assert orjson.loads(event.data)["n"] == n
            with contextlib.suppress(TimeoutError):  # nothing else may come
                extra = await client.next_event(timeout=0.05)
                raise AssertionError(f"a record delivered twice: {extra}")
            last_id = event.id
        closed_at = time.monotonic()
        await asyncio.sleep(max(0.0, closed_at + linger + offset - time.monotonic()))
    metrics = await scrape(bridge)
    assert (metrics.value("topic_releases_total") or 0) >= 1
    assert (metrics.value("topic_assignments_total") or 0) >= 2
