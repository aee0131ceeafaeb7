"""Topics deleted, and created again under the same name: streams are told,
and a topic created again is a new topic on every path (live, ring, Kafka,
since=), whatever bridge process answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.errors import TopicAlreadyExistsError

from tests.support.bridgeproc import BridgeProcess, Stream, open_sse, open_stream
from tests.support.cluster import Cluster, unique_topic

pytestmark = pytest.mark.kafka
StartBridge = Callable[..., Any]


async def create_again(cluster: Cluster, name: str, partitions: int, timeout: float = 20.0) -> None:
    """Kafka may still be removing the old topic's partitions for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await cluster.create_topic(name, partitions)
            return
        except TopicAlreadyExistsError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def ends_with_deleted(stream: Stream, topic: str, last_id: str) -> None:
    """The next event says ``topic`` was deleted (no id of its own: the last id stays), then the stream ends."""
    event = await stream.next_event()
    assert (event.type, orjson.loads(event.data), event.id) == ("deleted", {"topic": topic}, last_id)
    with pytest.raises(EOFError):
        await stream.next_event()


async def test_a_deleted_topic_ends_its_streams_with_an_event_and_is_served_no_more(
    cluster: Cluster, bridge: BridgeProcess, topic: str
) -> None:
    other = await cluster.create_topic(unique_topic("other"), 1)
    await bridge.wait_for_topic(other)
    async with (
        open_stream(bridge.url, topic) as plain,
        open_sse(bridge.url, "/sse", params=[("topic", topic), ("topic", other)]) as both,
        open_stream(bridge.url, other) as untouched,
    ):
        await cluster.produce(topic, [b"a", b"b", b"c"])
        plain_events, both_events = await plain.events(3), await both.events(3)
        await cluster.delete_topic(topic)
        await ends_with_deleted(plain, topic, plain_events[-1].id)
        await ends_with_deleted(both, topic, both_events[-1].id)
        await cluster.produce(other, [b"still here"], partitions=1)
        assert (await untouched.next_event()).data == "still here"
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        assert topic not in [entry["topic"] for entry in (await client.get("/topics")).json()["topics"]]
        refused = await client.get(f"/sse/{topic}")
    assert (refused.status_code, refused.json()["error"]) == (404, "unknown_topic")
    assert "was deleted" in bridge.log()


async def test_a_topic_created_again_is_a_new_topic_on_every_resume_path(
    cluster: Cluster, start_bridge: StartBridge
) -> None:
    topic = await cluster.create_topic(unique_topic("again"), 2)
    ring: BridgeProcess = await start_bridge()
    kafka_only: BridgeProcess = await start_bridge(ring_records="1")  # resumes read Kafka
    for bridge in (ring, kafka_only):
        await bridge.wait_for_topic(topic, 2)
    async with open_stream(ring.url, topic) as old_stream:
        await cluster.produce(topic, [f"old-{n}".encode() for n in range(5)], partitions=2)
        old_events = await old_stream.events(5)
        old_tag = await cluster.tag(topic)
        await cluster.delete_topic(topic)
        await ends_with_deleted(old_stream, topic, old_events[-1].id)

    await create_again(cluster, topic, 3)  # with another partition count
    new_tag = await cluster.tag(topic)
    assert new_tag != old_tag
    for bridge in (ring, kafka_only):
        await bridge.wait_for_topic(topic, 3)
        await bridge.watch(topic)  # read from now on: the new records go into its ring
    new_values = [f"new-{n}" for n in range(6)]
    await cluster.produce(topic, [value.encode() for value in new_values], partitions=3)
    fresh: BridgeProcess = await start_bridge()  # knew nothing of the old topic: the tag alone tells
    await fresh.wait_for_topic(topic, 3)

    for bridge in (ring, kafka_only, fresh):
        for old_id in (old_events[0].id, old_events[-1].id):
            async with open_stream(bridge.url, topic, last_event_id=old_id) as resumed:
                reset = await resumed.next_event()
                got = await resumed.events(len(new_values))
            body = orjson.loads(reset.data)
            assert (reset.type, body["topic"], body["reason"]) == ("reset", topic, "recreated"), bridge.flags
            assert all(p["end"] == 0 for p in body["partitions"])
            assert sorted(e.data for e in got) == sorted(new_values), (bridge.flags, old_id)
            assert all(e.id.endswith(f"@{new_tag}") for e in got)
        async with open_stream(bridge.url, topic, query={"since": "earliest"}) as since:
            assert sorted(e.data for e in await since.events(len(new_values))) == sorted(new_values)
    async with open_stream(kafka_only.url, topic) as live:
        await cluster.produce(topic, [b"live"], partition_of=[2], partitions=3)
        event = await live.next_event()
    assert (event.data, event.id) == ("live", f"2.2.3@{new_tag}")
