"""Several topics on one stream, filters, the envelope and /topics, against a real broker."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import orjson
import pytest

from bridge.wire import cursor as cursors
from tests.support.bridgeproc import BridgeProcess, open_sse, open_stream, untagged
from tests.support.cluster import Cluster, unique_topic
from tests.support.scrape import eventually
from tests.support.sseparse import Event

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]


class Topics:
    """Records produced to several topics, each value naming its topic and number."""

    def __init__(self, cluster: Cluster, partitions: dict[str, int]) -> None:
        self.cluster = cluster
        self.partitions = partitions
        self.records: dict[tuple[str, int], list[str]] = defaultdict(list)  # (topic, partition) -> values

    async def produce(self, topic: str, count: int) -> None:
        values = [orjson.dumps({"t": topic, "n": len(self.of(topic)) + n}) for n in range(count)]
        sent = await self.cluster.produce(topic, values, partitions=self.partitions[topic])
        for value, (partition, offset) in zip(values, sent, strict=True):
            assert offset == len(self.records[topic, partition])
            self.records[topic, partition].append(value.decode())

    def of(self, topic: str) -> list[str]:
        return [value for (name, _), values in self.records.items() if name == topic for value in values]

    def position(self, topic: str) -> tuple[int, ...]:
        return tuple(len(self.records[topic, p]) for p in range(self.partitions[topic]))

    def grouped(self, events: Sequence[Event]) -> dict[tuple[str, int], list[str]]:
        where = {value: key for key, values in self.records.items() for value in values}
        grouped: dict[tuple[str, int], list[str]] = defaultdict(list)
        for event in events:
            grouped[where[event.data]].append(event.data)
        return dict(grouped)

    def after(self, cursor: Mapping[str, Sequence[int]]) -> dict[tuple[str, int], list[str]]:
        return {
            (topic, p): values[cursors.offset_for(cursor[topic], p) :]
            for (topic, p), values in self.records.items()
            if values[cursors.offset_for(cursor[topic], p) :]
        }


async def two_topics(cluster: Cluster, start_bridge: StartBridge, **flags: str) -> tuple[BridgeProcess, str, str]:
    first = await cluster.create_topic(unique_topic("a"), partitions=3)
    second = await cluster.create_topic(unique_topic("b"), partitions=2)
    bridge: BridgeProcess = await start_bridge(**flags)
    await bridge.wait_for_topic(first, 3)
    await bridge.wait_for_topic(second, 2)
    return bridge, first, second


async def test_several_topics_on_one_stream_resume_exactly_from_the_ring_and_from_kafka(
    cluster: Cluster, start_bridge: StartBridge
) -> None:
    bridge, first, second = await two_topics(cluster, start_bridge, ring_records="20")
    names = sorted([first, second])
    produced = Topics(cluster, {first: 3, second: 2})
    async with open_sse(bridge.url, "/sse", params=[("topic", second), ("topic", first)]) as stream:
        for topic in (first, second, first, second):
            await produced.produce(topic, 15)
        live = await stream.events(60)
    assert produced.grouped(live) == produced.records  # every record, in partition order
    ids = [cursors.parse_streams(event.id, 2)[0] for event in live]
    assert all(all(a <= b for a, b in zip(itertools.chain(*x), itertools.chain(*y), strict=True))
               for x, y in itertools.pairwise(ids))  # fmt: skip
    assert ids[-1] == tuple(produced.position(name) for name in names)

    # The same id, the topics listed the other way round: the same stream.
    # Event 5's id is older than the rings (20 records each): caught up from Kafka.
    for index in (5, 55):
        cursor = dict(zip(names, ids[index], strict=True))
        missed = sum(len(values) for values in produced.after(cursor).values())
        async with open_sse(bridge.url, "/sse", live[index].id, [("topic", first), ("topic", second)]) as resumed:
            rest = await resumed.events(missed)
            await produced.produce(second, 4)
            rest += await resumed.events(4)
        assert produced.grouped(rest) == produced.after(cursor), index
    async with open_sse(bridge.url, "/sse", None, [("topic", first), ("topic", second), ("since", "earliest")]) as old:
        everything = await old.events(sum(len(values) for values in produced.records.values()))
    assert produced.grouped(everything) == produced.records
    metrics = await eventually(bridge, lambda m: m.value("subscribers", topic=first) == 0)
    assert metrics.value("resumes_total", topic=first, kind="since") == 1
    assert metrics.value("resumes_total", topic=first, kind="kafka") == 1
    assert metrics.value("resumes_total", topic=second, kind="ring") == 1


async def test_filters_by_key_header_and_json_field(cluster: Cluster, bridge: BridgeProcess, topic: str) -> None:
    values = [orjson.dumps({"type": kind, "n": n}) for n, kind in enumerate(["alert", "info", "alert", "debug"])]
    values.append(b"not json")
    queries = {
        "where": {"where": "type==alert"},
        "key": {"key": "1"},  # the cluster helper keys records by their index
        "header": {"header.source": "probe"},
        "both": {"where": "type==alert", "key": "2"},
    }
    async with (
        open_stream(bridge.url, topic, query=queries["where"]) as alerts,
        open_stream(bridge.url, topic, query=queries["key"]) as keyed,
        open_stream(bridge.url, topic, query=queries["header"]) as probes,
        open_stream(bridge.url, topic, query=queries["both"]) as both,
    ):
        await cluster.produce(topic, values, partition_of=[0] * len(values))
        await cluster.produce(topic, [b"probe"], partition_of=[1], headers=[("source", b"probe")])
        assert [e.data for e in await alerts.events(2)] == [values[0].decode(), values[2].decode()]
        assert [e.data for e in await keyed.events(1)] == [values[1].decode()]
        assert [e.data for e in await probes.events(1)] == ["probe"]
        assert [e.data for e in await both.events(1)] == [values[2].decode()]
        # past the skipped records: a heartbeat carries the position after all six
        for stream in (alerts, keyed, probes, both):
            await stream.last_cursor_becomes("5.1.0")


async def test_bad_subscriptions_answer_400_or_404_naming_the_problem(
    cluster: Cluster, bridge: BridgeProcess, topic: str
) -> None:
    cases: list[tuple[str, list[tuple[str, str | int | float | bool | None]], int, str, str]] = [
        (f"/sse/{topic}", [("where", "type")], 400, "bad_filter", "PATH==VALUE"),
        (f"/sse/{topic}", [("where", "a=={}")], 400, "bad_filter", "string, number"),
        (f"/sse/{topic}", [("header.", "x")], 400, "bad_filter", "header.NAME"),
        (f"/sse/{topic}", [("format", "xml")], 400, "bad_request", "format"),
        ("/sse", [], 400, "bad_request", "topic"),
        ("/sse", [("topic", topic), ("topic", "test-missing")], 404, "unknown_topic", "test-missing"),
        (f"/sse/{topic}", [("lastEventId", "1.2.3~4")], 400, "bad_event_id", "covers 2 topic(s)"),
    ]
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        for path, params, status, error, named in cases:
            response = await client.get(path, params=params)
            assert response.status_code == status, (path, params, response.text)
            assert response.json()["error"] == error, (path, params)
            assert named in response.json()["message"], (path, params)
    # one topic asked through /sse is that topic's stream, ids included
    async with open_sse(bridge.url, "/sse", "0.0.0", [("topic", topic)]):
        pass


async def test_a_filtered_stream_resumes_from_the_ring_past_what_it_skipped(
    cluster: Cluster, start_bridge: StartBridge, topic: str
) -> None:
    bridge: BridgeProcess = await start_bridge(ring_records="20", heartbeat="0.3")
    await bridge.wait_for_topic(topic, 3)
    query = {"where": "type==alert"}
    async with open_stream(bridge.url, topic, query=query) as stream:
        await cluster.produce(topic, [orjson.dumps({"type": "info"})] * 90)
        await stream.last_cursor_becomes("30.30.30")  # no event: an id-only frame on the heartbeat
    async with open_stream(bridge.url, topic, "30.30.30", query) as resumed:
        await cluster.produce(topic, [orjson.dumps({"type": "alert"})], partition_of=[2])
        [event] = await resumed.events(1)
    assert untagged(event.id) == "30.30.31"
    metrics = await eventually(bridge, lambda m: m.value("subscribers", topic=topic) == 0)
    # 90 records skipped, a ring of 20: without the advanced id this would have read Kafka
    assert metrics.value("resumes_total", topic=topic, kind="ring") == 1
    assert metrics.value("resumes_total", topic=topic, kind="kafka") == 0


async def test_envelope_per_stream_and_as_the_configured_default(
    cluster: Cluster, start_bridge: StartBridge, topic: str
) -> None:
    bridge: BridgeProcess = await start_bridge(format="envelope")
    await bridge.wait_for_topic(topic, 3)
    values: list[bytes | None] = [b'{"id": 7}', b"plain text", b"\xff\xfe", None]
    async with (
        open_stream(bridge.url, topic) as default,
        open_stream(bridge.url, topic, query={"format": "raw"}) as raw,
    ):
        sent = await cluster.produce(topic, values, partition_of=[1] * 4, headers=[("h", b"v")])
        enveloped = [orjson.loads(event.data) for event in await default.events(4)]
        assert [event.type for event in await raw.events(4)] == ["message", "message", "binary", "tombstone"]
    assert [(e["value"], e["value_encoding"], e["tombstone"]) for e in enveloped] == [
        ({"id": 7}, "json", False),
        ("plain text", "text", False),
        (base64.b64encode(b"\xff\xfe").decode(), "base64", False),
        (None, None, True),
    ]
    for index, envelope in enumerate(enveloped):
        assert envelope["topic"] == topic
        assert (envelope["partition"], envelope["offset"]) == sent[index]
        assert envelope["key"] == str(index)  # the cluster helper's keys
        assert envelope["headers"] == [["h", "v"]]
        assert envelope["timestamp"] > 0


async def test_topics_lists_partitions_positions_and_end_offsets(
    cluster: Cluster, bridge: BridgeProcess, topic: str
) -> None:
    await bridge.watch(topic)  # read from now on: /topics gives its positions
    await cluster.produce(topic, [b"x"] * 7)
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        for _ in range(100):
            answer = (await client.get("/topics")).json()
            served = {entry["topic"]: entry for entry in answer["topics"]}
            if served[topic]["position"] == [3, 2, 2]:
                break
            await asyncio.sleep(0.1)
    assert served[topic] == {"topic": topic, "partitions": 3, "read": True, "position": [3, 2, 2],
                             "end_offsets": [3, 2, 2], "event_types": []}  # fmt: skip
    # What the page at / needs: the topics to open with (none set) and the event types that are not records.
    assert answer["page_topics"] == []
    assert {"gap", "reset", "reauth"} <= set(answer["control_events"])
    assert not {"message", "tombstone", "binary"} & set(answer["control_events"])
