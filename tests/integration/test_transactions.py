"""Transactional producers: browsers get committed records only, ids stay exact
around aborted transactions and commit markers, an open transaction holds its
partition back (visibly, and not as a stall), and read_uncommitted is there
for who asks. Two independent producers: aiokafka's and librdkafka's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from bridge.kafka.local import LocalKafka
from bridge.wire import cursor as cursors
from tests.support.bridgeproc import BridgeProcess, Stream, open_stream
from tests.support.cluster import Cluster
from tests.support.scrape import eventually, scrape
from tests.support.sseparse import Event
from tests.support.transactions import PRODUCERS, TransactionalProducer, transaction

pytestmark = pytest.mark.kafka
StartBridge = Callable[..., Any]

# Interleaved over three partitions; partitions 1 and 2 end with an aborted transaction.
PLAN: Sequence[tuple[bool, Sequence[tuple[int, str]]]] = (
    (True, [(0, "c1-p0"), (1, "c1-p1"), (2, "c1-p2")]),
    (False, [(0, "A2-p0"), (1, "A2-p1")]),
    (True, [(1, "c3-p1"), (2, "c3-p2"), (0, "c3-p0")]),
    (False, [(2, "A4-p2"), (0, "A4-p0"), (2, "A4-p2b")]),
    (True, [(0, "c5-p0")]),
    (False, [(1, "A6-p1")]),
)
COMMITTED = [value for commit, records in PLAN if commit for _, value in records]


@pytest.fixture(params=sorted(PRODUCERS))
async def producer(request: pytest.FixtureRequest, kafka: LocalKafka) -> AsyncIterator[TransactionalProducer]:
    made: TransactionalProducer = PRODUCERS[request.param](kafka.bootstrap_servers)
    await made.start()
    yield made
    await made.stop()


def partition_of(event: Event) -> int:
    return int(event.data.rsplit("-p", 1)[1][0])


def by_partition(values: Sequence[str]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for value in values:
        grouped.setdefault(int(value.rsplit("-p", 1)[1][0]), []).append(value)
    return grouped


def after(events: Sequence[Event], id: str) -> list[str]:
    """What a stream resumed from ``id`` must get of ``events``: per partition, the records past the id."""
    cursor = cursors.parse(id)
    return [
        e.data for e in events if cursors.parse(e.id)[partition_of(e)] > cursors.offset_for(cursor, partition_of(e))
    ]


async def nothing_more(stream: Stream, seconds: float = 1.0) -> None:
    with pytest.raises(TimeoutError):
        await stream.next_event(timeout=seconds)


@pytest.mark.both_kafka_versions
async def test_only_committed_records_reach_streams_live_and_resumed_from_ring_and_kafka(
    start_bridge: StartBridge, topic: str, producer: TransactionalProducer
) -> None:
    bridge: BridgeProcess = await start_bridge(ring_records="4")  # early ids resume from Kafka, late ones from the ring
    await bridge.wait_for_topic(topic, 3)
    async with open_stream(bridge.url, topic) as live:
        for commit, records in PLAN:
            await transaction(producer, topic, records, commit=commit)
        events = await live.events(len(COMMITTED))
        await nothing_more(live)
    assert by_partition([e.data for e in events]) == by_partition(COMMITTED)  # each partition in order, no abort

    # Newest id first: the ring covers it; by the oldest ones the ring has moved on and Kafka is read.
    for round, start in enumerate([*(event.id for event in reversed(events)), "0.0.0"]):
        missed = after(events, start)
        async with open_stream(bridge.url, topic, last_event_id=start) as resumed:
            got = [e.data for e in await resumed.events(len(missed))]
            await nothing_more(resumed, 0.5)
            # The catch-up ended even where a partition ends with an abort: the stream is live.
            await transaction(producer, topic, [(1, f"c9.{round}-p1")], commit=True)
            events.append(await resumed.next_event())  # later resumes must get it too
        assert by_partition(got) == by_partition(missed), start
        assert events[-1].data == f"c9.{round}-p1", start
    scraped = await scrape(bridge)
    assert (scraped.value("resumes_total", topic=topic, kind="kafka") or 0) >= 1
    assert (scraped.value("resumes_total", topic=topic, kind="ring") or 0) >= 1


async def test_an_open_transaction_holds_its_partition_visibly_and_is_no_stall(
    start_bridge: StartBridge, cluster: Cluster, topic: str, producer: TransactionalProducer
) -> None:
    bridge: BridgeProcess = await start_bridge(stall_seconds="1")
    await bridge.wait_for_topic(topic, 3)
    async with open_stream(bridge.url, topic) as stream:
        await producer.begin(topic, [(0, "open-p0")])
        await cluster.produce(topic, [b"after-p0"], partition_of=[0])  # behind the open transaction
        await cluster.produce(topic, [b"other-p1"], partition_of=[1])
        assert (await stream.next_event()).data == "other-p1"
        held = await eventually(bridge, lambda m: m.value("open_transaction_offsets", topic=topic, partition="0") == 2)
        assert held.value("consumer_lag_records", topic=topic, partition="0") == 0  # read to the stable end
        await asyncio.sleep(4)  # four stall bounds: a stalled consumer would have been replaced
        await nothing_more(stream, 0.2)
        assert (await scrape(bridge)).value("consumer_restarts_total") == 0
        assert "stalled" not in bridge.log()

        await producer.end(commit=True)
        assert [e.data for e in await stream.events(2)] == ["open-p0", "after-p0"]
    await eventually(bridge, lambda m: m.value("open_transaction_offsets", topic=topic, partition="0") == 0)


async def test_read_uncommitted_delivers_aborted_records_too(
    start_bridge: StartBridge, kafka: LocalKafka, topic: str
) -> None:
    bridge: BridgeProcess = await start_bridge(isolation_level="read_uncommitted")
    await bridge.wait_for_topic(topic, 3)
    producer: TransactionalProducer = PRODUCERS["aiokafka"](kafka.bootstrap_servers)
    await producer.start()
    try:
        async with open_stream(bridge.url, topic) as stream:
            for commit, records in PLAN[:2]:
                await transaction(producer, topic, records, commit=commit)
            got = [e.data for e in await stream.events(5)]
    finally:
        await producer.stop()
    assert by_partition(got) == by_partition(["c1-p0", "c1-p1", "c1-p2", "A2-p0", "A2-p1"])
