"""Random filters over random records, against the real broker: every stream
gets exactly the records a plain Python evaluation of its filter selects,
live and after a resume from Kafka (a ring too small to cover it).

The evaluation here is written apart from bridge/filters.py (stdlib json,
its own path walk) so that the two can disagree."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.wire import cursor as cursors
from tests.support.bridgeproc import BridgeProcess, open_sse
from tests.support.cluster import Cluster, unique_topic
from tests.support.sseparse import Event

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]
SEED = 20261127
KEYS = [b"k0", b"k1", b"k2", None]
HEADER_VALUES = {"type": [b"a", b"b"], "region": [b"eu", b"us"]}
CLAUSES: list[tuple[str, str]] = [
    ("key", "k0"), ("key", "k1"), ("header.type", "a"), ("header.type", "b"), ("header.region", "eu"),
    ("where", "type==alert"), ("where", "type==info"), ("where", "level==2"), ("where", "level==true"),
    ("where", 'user.id=="1"'), ("where", "user.id==1"), ("where", "tags.0==x"), ("where", "gone==null"),
]  # fmt: skip


@dataclass(frozen=True)
class Produced:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes | None


def random_value(rng: random.Random) -> bytes | None:
    kind = rng.random()
    if kind < 0.1:
        return None
    if kind < 0.2:
        return rng.choice([b"plain text", b"\xff\xfe binary", b"[1, 2]", b"42", b'"alert"'])
    document: dict[str, object] = {}
    for name, choices in (
        ("type", ["alert", "info", "debug"]),
        ("level", [1, 2, 2.0, True, "2"]),
        ("user", [{"id": 1}, {"id": "1"}, {"id": True}, {"name": "x"}, 1]),
        ("tags", [["x", "y"], ["y"], [], "x"]),
        ("gone", [None, 0]),
    ):
        if rng.random() < 0.7:
            document[name] = rng.choice(choices)
    return orjson.dumps(document)


def random_records(rng: random.Random, topics: dict[str, int], count: int) -> list[tuple[str, int, Produced]]:
    made = []
    for _ in range(count):
        topic = rng.choice(sorted(topics))
        headers = tuple((name, rng.choice(values)) for name, values in HEADER_VALUES.items() if rng.random() < 0.6)
        value = random_value(rng)
        key = rng.choice(KEYS) if value is not None else b"k2"  # a tombstone needs a key
        made.append((topic, rng.randrange(topics[topic]), Produced(topic, -1, -1, key, headers, value)))
    return made


def plain_match(query: Sequence[tuple[str, str]], record: Produced) -> bool:
    """Same parameter: any of its values; different parameters: all."""
    groups: dict[str, list[str]] = {}
    for name, value in query:
        group = f"where:{value.split('==', 1)[0]}" if name == "where" else name
        groups.setdefault(group, []).append(value)
    return all(any(clause_match(group, value, record) for value in values) for group, values in groups.items())


def clause_match(group: str, value: str, record: Produced) -> bool:
    if group == "key":
        return record.key == value.encode()
    if group.startswith("header."):
        return (group.removeprefix("header."), value.encode()) in record.headers
    if record.value is None:
        return False
    try:
        document = json.loads(record.value)
    except ValueError:
        return False
    path, wanted_text = value.split("==", 1)
    try:
        wanted = json.loads(wanted_text)
    except ValueError:
        wanted = wanted_text
    for segment in path.split("."):
        if isinstance(document, dict) and segment in document:
            document = document[segment]
        elif isinstance(document, list) and segment.isdigit() and int(segment) < len(document):
            document = document[int(segment)]
        else:
            return False
    if isinstance(wanted, bool) or isinstance(document, bool) or wanted is None or document is None:
        return type(wanted) is type(document) and wanted == document
    if isinstance(wanted, (int, float)) and isinstance(document, (int, float)):
        return bool(wanted == document)
    return type(wanted) is type(document) and wanted == document


async def produce(cluster: Cluster, planned: list[tuple[str, int, Produced]]) -> list[Produced]:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, record.value, key=record.key, partition=partition,
                                headers=list(record.headers) or None)
            for topic, partition, record in planned
        ]  # fmt: skip
        await producer.flush()
        sent = []
        for (topic, _, record), future in zip(planned, futures, strict=True):
            metadata = await future
            sent.append(Produced(topic, metadata.partition, metadata.offset, record.key, record.headers, record.value))
        return sent
    finally:
        await producer.stop()


def identity(data: str) -> tuple[str, int, int]:
    envelope = orjson.loads(data)
    return envelope["topic"], envelope["partition"], envelope["offset"]


def in_partition_order(records: Sequence[tuple[str, int, int]]) -> dict[tuple[str, int], list[int]]:
    grouped: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in records:
        grouped.setdefault((topic, partition), []).append(offset)
    return grouped


@dataclass
class Subscription:
    query: list[tuple[str, str]]
    topics: list[str]

    def params(self) -> list[tuple[str, str]]:
        return [*(("topic", name) for name in self.topics), *self.query, ("format", "envelope")]

    def selects(self, records: Sequence[Produced], cursor: Mapping[str, Sequence[int]]) -> list[tuple[str, int, int]]:
        return [
            (r.topic, r.partition, r.offset)
            for r in records
            if r.topic in self.topics
            and r.offset >= cursors.offset_for(cursor[r.topic], r.partition)
            and plain_match(self.query, r)
        ]

    def id_of(self, positions: dict[str, list[int]]) -> str:
        """The stream's id at ``positions``, without the topics' tags."""
        return cursors.encode_streams([positions[name] for name in sorted(self.topics)], [""] * len(self.topics))

    def cursor_of(self, id: str) -> dict[str, Sequence[int]]:
        offsets, _ = cursors.parse_streams(id, len(self.topics))
        return dict(zip(sorted(self.topics), offsets, strict=True))


async def check_streams(
    cluster: Cluster, bridge: BridgeProcess, subscriptions: Sequence[Subscription], starts: Sequence[str | None],
    planned: list[tuple[str, int, Produced]], earlier: list[Produced], topics: dict[str, int],
) -> tuple[list[Produced], list[list[Event]]]:  # fmt: skip
    """Open every stream (from ``starts``), produce ``planned``, check what each receives."""
    results = []
    async with contextlib.AsyncExitStack() as opened:
        streams = [
            await opened.enter_async_context(open_sse(bridge.url, "/sse", start, subscription.params()))
            for subscription, start in zip(subscriptions, starts, strict=True)
        ]
        sent = [*earlier, *await produce(cluster, planned)]
        positions = {name: [0] * partitions for name, partitions in topics.items()}
        for record in sent:
            positions[record.topic][record.partition] = record.offset + 1
        for stream, subscription, start in zip(streams, subscriptions, starts, strict=True):
            # a live stream opened before anything was produced to its fresh topics
            cursor: Mapping[str, Sequence[int]] = subscription.cursor_of(start) if start else dict.fromkeys(topics, ())
            expected = subscription.selects(sent, cursor)
            events = await stream.events(len(expected), timeout=60)
            got = [identity(event.data) for event in events]
            assert in_partition_order(got) == in_partition_order(expected), (SEED, subscription, start)
            # and nothing more: the id moves past the last records, no event comes
            await stream.last_cursor_becomes(subscription.id_of(positions))
            with pytest.raises(TimeoutError):
                await stream.next_event(timeout=0.2)
            results.append(events)
    return sent, results


async def test_random_filters_select_exactly_what_plain_python_selects_live_and_after_resume(
    cluster: Cluster, start_bridge: StartBridge
) -> None:
    rng = random.Random(SEED)
    topics = {await cluster.create_topic(unique_topic("p"), 3): 3, await cluster.create_topic(unique_topic("q"), 2): 2}
    bridge: BridgeProcess = await start_bridge(ring_records="15", heartbeat="0.3")
    for name, partitions in topics.items():
        await bridge.wait_for_topic(name, partitions)
    subscriptions = [
        Subscription(rng.sample(CLAUSES, rng.randint(1, 3)),
                     sorted(topics) if rng.random() < 0.6 else [rng.choice(sorted(topics))])
        for _ in range(8)
    ]  # fmt: skip

    sent, live = await check_streams(cluster, bridge, subscriptions, [None] * 8, random_records(rng, topics, 300),
                                     [], topics)  # fmt: skip
    # Resume each stream from the id of an event in the middle of what it got
    # (or, if it got none, from the start): the ring, 15 records a topic,
    # no longer has it, so Kafka is read; then more records arrive live.
    starts = [events[len(events) // 2].id if events else None for events in live]
    starts = [start or subscription.id_of({name: [0] * count for name, count in topics.items()})
              for start, subscription in zip(starts, subscriptions, strict=True)]  # fmt: skip
    await check_streams(cluster, bridge, subscriptions, starts, random_records(rng, topics, 100), sent, topics)
