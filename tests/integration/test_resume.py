"""Resume past the ring buffer: catch-up from Kafka, since=, gap events, other
replicas and restarts. Each client's sequence must equal the topic's records
after its starting point, per partition, exactly once."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.kafka.local import LocalKafka
from bridge.wire import cursor as cursors
from tests.support.bridgeproc import BridgeProcess, dechunk, open_stream, untagged
from tests.support.cluster import Cluster, unique_topic
from tests.support.scrape import eventually
from tests.support.sseparse import Event, Parser

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]


class Topic:
    """What was produced, per partition, to compare clients against."""

    def __init__(self, cluster: Cluster, name: str, partitions: int = 3) -> None:
        self.cluster = cluster
        self.name = name
        self.partitions = partitions
        self.records: dict[int, list[str]] = defaultdict(list)
        self.produced = 0

    async def produce(self, count: int, *, partitions: Sequence[int] | None = None, pad: int = 0) -> None:
        chosen = list(partitions) if partitions is not None else [n % self.partitions for n in range(count)]
        values = [orjson.dumps({"n": self.produced + n, "pad": "p" * pad}) for n in range(count)]
        sent = await self.cluster.produce(self.name, values, partition_of=chosen, partitions=self.partitions)
        for value, (partition, offset) in zip(values, sent, strict=True):
            assert offset == len(self.records[partition])
            self.records[partition].append(value.decode())
        self.produced += count

    def after(self, cursor: Sequence[int]) -> dict[int, list[str]]:
        return {p: values[cursors.offset_for(cursor, p) :] for p, values in self.records.items()}

    def partition_of(self, data: str) -> int:
        return next(p for p, values in self.records.items() if data in values)

    def grouped(self, events: Sequence[Event]) -> dict[int, list[str]]:
        grouped: dict[int, list[str]] = {p: [] for p in self.records}
        for event in events:
            grouped[self.partition_of(event.data)].append(event.data)
        return grouped


@pytest.fixture
def produced(cluster: Cluster, topic: str) -> Topic:
    return Topic(cluster, topic)


async def small_ring_bridge(start_bridge: StartBridge, topic: str, **flags: str) -> BridgeProcess:
    bridge: BridgeProcess = await start_bridge(ring_records="20", **flags)
    await bridge.wait_for_topic(topic, 3)
    return bridge


@pytest.mark.both_kafka_versions
async def test_catch_up_from_kafka_hands_over_to_live_without_gap_or_duplicate(
    start_bridge: StartBridge, produced: Topic, topic: str
) -> None:
    bridge = await small_ring_bridge(start_bridge, topic)
    await produced.produce(600)
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as client:
        first = await client.events(50)  # catching up now; more records arrive meanwhile
        more = asyncio.create_task(produced.produce(300))
        rest = await client.events(850, timeout=60)
        await more
    events = first + rest
    assert produced.grouped(events) == produced.after((0, 0, 0))
    ids = [cursors.parse(event.id) for event in events]
    assert all(a <= b for earlier, later in itertools.pairwise(ids) for a, b in zip(earlier, later, strict=True))
    assert ids[-1] == (300, 300, 300)


async def test_a_wide_topic_resumes_exactly_from_compact_ids_and_from_readable_ones(
    start_bridge: StartBridge, cluster: Cluster
) -> None:
    """256 partitions: ids are compact; resuming from one, from the ring or
    from Kafka, gives exactly the records after it, each id exactly the cursor
    after its record, and so does the same cursor in the readable form of
    earlier versions, with or without its tag."""
    wide = Topic(cluster, await cluster.create_topic(unique_topic("wide"), partitions=256), partitions=256)
    bridge: BridgeProcess = await start_bridge(ring_records="200")
    await bridge.wait_for_topic(wide.name, 256)
    async with httpx.AsyncClient(base_url=bridge.url) as http:
        # The first stream reads the end offsets of 256 partitions just created, which may take
        # Kafka longer than a stream waits (503, "Retry-After: 2"): retried, as a browser would.
        for _ in range(10):
            async with http.stream("GET", f"/sse/{wide.name}") as response:
                if response.status_code == 200:
                    break
            await asyncio.sleep(2)
    async with open_stream(bridge.url, wide.name) as live:  # live: the ring keeps the last 200 records
        await wide.produce(1280)  # 5 per partition, round the partitions
        events = await live.events(1280, timeout=60)
        assert wide.grouped(events) == wide.after((0,))
        assert all(event.id.startswith(cursors.COMPACT) for event in events)
        assert len(events[-1].id) <= 4 * 256
        assert cursors.parse(events[-1].id) == (5,) * 256
        for cut in (1200, 100):  # from the ring, from Kafka
            cursor, tag = cursors.parse_tagged(events[cut - 1].id)
            readable = ".".join(map(str, cursor))
            for last_event_id in (events[cut - 1].id, readable, f"{readable}@{tag}"):
                async with open_stream(bridge.url, wide.name, last_event_id=last_event_id) as client:
                    resumed = await client.events(1280 - cut, timeout=60)
                assert wide.grouped(resumed) == wide.after(cursor), (cut, last_event_id[:20])
                position = list(cursor)
                for event in resumed:
                    position[wide.partition_of(event.data)] += 1
                    assert cursors.parse(event.id) == tuple(position)
    await eventually(bridge, lambda m: [m.value("resumes_total", topic=wide.name, kind=kind)
                                        for kind in ("ring", "kafka")] == [3, 3])  # fmt: skip


async def test_catch_ups_beyond_the_bound_wait_their_turn(
    start_bridge: StartBridge, produced: Topic, topic: str
) -> None:
    bridge = await small_ring_bridge(start_bridge, topic, max_catchups="1", heartbeat="0.2")
    await produced.produce(900, pad=500)
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as first, \
            open_stream(bridge.url, topic, last_event_id="100.100.100") as second:  # fmt: skip
        first_events = await first.events(900, timeout=60)
        second_events = await second.events(600, timeout=60)
    assert produced.grouped(first_events) == produced.after((0, 0, 0))
    assert produced.grouped(second_events) == produced.after((100, 100, 100))


@pytest.mark.both_kafka_versions
async def test_since_a_time_earliest_and_id_precedence(bridge: BridgeProcess, produced: Topic, topic: str) -> None:
    await produced.produce(30)
    await asyncio.sleep(0.05)
    middle = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    await produced.produce(30)
    later = {p: values[10:] for p, values in produced.records.items()}
    iso = datetime.fromtimestamp(middle / 1000, tz=UTC).isoformat()
    for since in (str(middle), iso):
        async with open_stream(bridge.url, topic, query={"since": since}) as client:
            assert produced.grouped(await client.events(30)) == later, since
    async with open_stream(bridge.url, topic, query={"since": "earliest"}) as client:
        assert produced.grouped(await client.events(60)) == produced.after((0, 0, 0))
    async with open_stream(bridge.url, topic, last_event_id="15.15.15", query={"since": "earliest"}) as client:
        assert produced.grouped(await client.events(15)) == produced.after((15, 15, 15))
    async with httpx.AsyncClient(base_url=bridge.url) as http:
        for bad in ("yesterday", "2026-13-01", "-5", "1e9", "9" * 25, ""):
            response = await http.get(f"/sse/{topic}", params={"since": bad})
            assert response.status_code == 400, bad
            assert response.json()["error"] in {"bad_since", "bad_request"}


@pytest.mark.both_kafka_versions
async def test_records_deleted_from_kafka_are_reported_as_a_gap(
    start_bridge: StartBridge, cluster: Cluster, produced: Topic, topic: str
) -> None:
    bridge = await small_ring_bridge(start_bridge, topic)
    await produced.produce(100, partitions=[0] * 100)
    await produced.produce(10, partitions=[1] * 10)
    await cluster.delete_records(topic, {0: 60})
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as client:
        gap = await client.next_event()
        events = await client.events(50)
    assert gap.type == "gap"
    assert orjson.loads(gap.data) == {
        "topic": topic, "partitions": [{"partition": 0, "requested": 0, "first_available": 60}],
    }  # fmt: skip
    assert produced.grouped(events) == {0: produced.records[0][60:], 1: produced.records[1]}


async def test_a_client_cut_from_one_replica_resumes_exactly_on_another(
    start_bridge: StartBridge, produced: Topic, topic: str
) -> None:
    first_replica: BridgeProcess = await start_bridge()
    await first_replica.wait_for_topic(topic, 3)
    await produced.produce(200)
    async with open_stream(first_replica.url, topic, last_event_id="0.0.0") as client:
        before = await client.events(120)
    await produced.produce(100)
    # started now, this replica's ring does not reach back to the cut: it reads Kafka
    second_replica: BridgeProcess = await start_bridge()
    await second_replica.wait_for_topic(topic, 3)
    async with open_stream(second_replica.url, topic, last_event_id=before[-1].id) as client:
        after = await client.events(180)
    assert produced.grouped(before + after) == produced.after((0, 0, 0))


async def test_clients_resume_exactly_after_the_bridge_is_killed(
    start_bridge: StartBridge, kafka: LocalKafka, produced: Topic, topic: str
) -> None:
    bridge: BridgeProcess = await start_bridge()
    await bridge.wait_for_topic(topic, 3)
    await produced.produce(150)
    received: list[list[Event]] = []
    for read in (40, 95):
        async with open_stream(bridge.url, topic, last_event_id="0.0.0") as client:
            received.append(await client.events(read))
    bridge.stop(signal.SIGKILL)
    await produced.produce(90)
    restarted = BridgeProcess(kafka.bootstrap_servers, bridge.flags, port=bridge.port)
    await restarted.start()
    try:
        for events in received:
            async with open_stream(restarted.url, topic, last_event_id=events[-1].id) as client:
                events.extend(await client.events(240 - len(events)))
            assert produced.grouped(events) == produced.after((0, 0, 0))
    finally:
        restarted.stop()


async def test_partitions_added_while_clients_catch_up_are_delivered(
    start_bridge: StartBridge, cluster: Cluster, produced: Topic, topic: str
) -> None:
    bridge = await small_ring_bridge(start_bridge, topic)
    await produced.produce(3000, pad=2000)  # ~6 MB: the catch-up is still reading when the partition comes
    async with open_stream(bridge.url, topic, last_event_id="0") as client:  # partitions 1, 2: from the start
        events = await client.events(100)
        await cluster.add_partitions(topic, 4)
        produced.partitions = 4
        await bridge.wait_for_topic(topic, 4)
        await produced.produce(8, partitions=[3] * 8)
        events += await client.events(3008 - 100, timeout=60)
    assert produced.grouped(events) == produced.after((0,))


async def test_random_disconnects_and_reconnects_lose_and_repeat_nothing(
    start_bridge: StartBridge, produced: Topic, topic: str
) -> None:
    """Production, cuts at random points and reconnections to ring-covered
    and older cursors, interleaved; each client must end with every record
    exactly once, in partition order."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    bridge = await small_ring_bridge(start_bridge, topic)
    clients: list[list[Event]] = [[] for _ in range(4)]
    for _ in range(6):
        await produced.produce(rng.randrange(1, 80), partitions=None)
        for received in clients:
            if rng.random() < 0.3:
                continue  # stays away for this round: its cursor ages past the ring
            cursor = received[-1].id if received else "0.0.0"
            async with open_stream(bridge.url, topic, last_event_id=cursor) as client:
                received.extend(await client.events(rng.randrange(0, produced.produced - len(received) + 1)))
    for received in clients:
        cursor = received[-1].id if received else "0.0.0"
        async with open_stream(bridge.url, topic, last_event_id=cursor) as client:
            received.extend(await client.events(produced.produced - len(received)))
        assert produced.grouped(received) == produced.after((0, 0, 0)), f"seed {seed}"


@pytest.mark.both_kafka_versions
async def test_a_catch_up_passes_transaction_markers(
    start_bridge: StartBridge, kafka: LocalKafka, cluster: Cluster, topic: str
) -> None:
    """A transaction's commit marker takes an offset but is no record: a client's
    id stops before it, a freshly started bridge's live position after it. The
    catch-up between the two must pass the marker and join live."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, transactional_id=f"tx-{topic}")
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(5):
                await producer.send(topic, orjson.dumps({"n": n}), partition=0)
    finally:
        await producer.stop()
    bridge: BridgeProcess = await start_bridge()  # starts at the live end: after the marker
    await bridge.wait_for_topic(topic, 3)
    async with open_stream(bridge.url, topic, last_event_id="5.0.0") as client:  # the id after the last record
        joined = await eventually(bridge, lambda metrics: metrics.value("catchups_in_progress") == 0, timeout=10)
        assert joined.value("resumes_total", topic=topic, kind="kafka") == 1
        await cluster.produce(topic, [b"live"], partition_of=[1])
        event = await client.next_event()
    assert (event.data, untagged(event.id)) == ("live", "6.1.0")


async def test_records_deleted_during_a_catch_up_are_reported_as_a_gap(
    start_bridge: StartBridge, cluster: Cluster, produced: Topic, topic: str
) -> None:
    bridge = await small_ring_bridge(start_bridge, topic)
    await produced.produce(6000, partitions=[0] * 6000, pad=2000)  # ~12 MB, more than the socket buffers hold
    # A client that does not read for now: the catch-up stops where the buffers are full.
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port, limit=1024)
    writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0.0.0\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(1)
    await cluster.delete_records(topic, {0: 5000})
    events: list[Event] = []
    raw, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:  # until the gap and the 1000 records after it are in
        raw += await asyncio.wait_for(reader.read(1 << 20), 10)
        events = Parser().feed(dechunk(raw.split(b"\r\n\r\n", 1)[1]))
        gap_at = next((i for i, event in enumerate(events) if event.type == "gap"), len(events))
        if len(events) - gap_at - 1 >= 1000 or len(events) >= 6000:
            break
    writer.close()
    gaps = [event for event in events if event.type == "gap"]
    assert len(gaps) == 1
    (lost,) = orjson.loads(gaps[0].data)["partitions"]
    before = events.index(gaps[0])
    assert lost == {"partition": 0, "requested": before, "first_available": 5000}
    assert [event.data for event in events if event.type == "message"] == (
        produced.records[0][:before] + produced.records[0][5000:]
    )
