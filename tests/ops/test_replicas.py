"""Replicas share the cluster by topic: docker-compose's nginx (config/nginx,
run for real) sends every stream of a topic to the same replica, a replica
reads only what its own streams watch, so a watched topic is read from Kafka
by about one replica; a replica that leaves moves only its own streams, which
resume exactly on the others."""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import orjson
import pytest

from tests.ops.nginxproc import Nginx, running_nginx
from tests.support.bridgeproc import BridgeProcess, Stream
from tests.support.cluster import Cluster, unique_topic
from tests.support.scrape import Scrape, scrape
from tests.support.sseparse import Event

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]
REPLICAS, TOPICS, STREAMS_PER_TOPIC = 3, 12, 5
CLEAN_EXITS = (0, -signal.SIGTERM)


class Follower:
    """A browser's EventSource: one stream through nginx, reconnecting with its last id whenever it ends."""

    def __init__(self, url: str, topic: str) -> None:
        self.url, self.topic = url, topic
        self.events: list[Event] = []
        self.connected = asyncio.Event()
        self.connections = 0
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(10.0, read=None)) as client:
            while True:
                headers = {"Last-Event-ID": self.events[-1].id} if self.events else {}
                try:
                    async with client.stream("GET", f"/sse/{self.topic}", headers=headers) as response:
                        if response.status_code != 200:  # 502/503 while a replica leaves: try again
                            await asyncio.sleep(0.2)
                            continue
                        self.connections += 1
                        stream = Stream(response)
                        try:
                            await self._take(stream)
                        finally:
                            await stream.close()
                except (EOFError, httpx.HTTPError):
                    await asyncio.sleep(0.2)  # the bridge's retry is 2 s; sooner keeps the test short

    async def _take(self, stream: Stream) -> None:
        self.connected.set()  # the response has started: the replica reads the topic from here on
        while True:
            self.events.append(await stream.next_event(timeout=60))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Produced:
    def __init__(self, cluster: Cluster, topics: Sequence[str]) -> None:
        self.cluster = cluster
        self.offsets: dict[str, dict[str, tuple[int, int]]] = {topic: {} for topic in topics}

    async def send(self, per_topic: int) -> None:
        async def one(topic: str) -> None:
            start = len(self.offsets[topic])
            values = [orjson.dumps({"topic": topic, "n": n}) for n in range(start, start + per_topic)]
            for value, where in zip(values, await self.cluster.produce(topic, values), strict=True):
                self.offsets[topic][value.decode()] = where

        await asyncio.gather(*(one(topic) for topic in self.offsets))

    @property
    def count(self) -> int:
        return sum(len(sent) for sent in self.offsets.values())

    def per_partition(self, topic: str, events: Sequence[Event]) -> dict[int, list[int]]:
        grouped: dict[int, list[int]] = defaultdict(list)
        for event in events:
            partition, offset = self.offsets[topic][event.data]
            grouped[partition].append(offset)
        return dict(grouped)

    def everything(self, topic: str) -> dict[int, list[int]]:
        return self.per_partition(topic, [Event(data) for data in self.offsets[topic]])


def consumed(scrapes: Sequence[Scrape]) -> float:
    return sum(s.value for m in scrapes for s in m.samples if s.name == "kafka_sse_bridge_records_consumed_total")


@pytest.fixture
async def stack(
    start_bridge: StartBridge, cluster: Cluster
) -> AsyncIterator[tuple[list[BridgeProcess], Nginx, list[str]]]:
    """Three replicas behind nginx, and twelve new topics."""
    topics = [await cluster.create_topic(unique_topic(f"share{n}")) for n in range(TOPICS)]
    replicas: list[BridgeProcess] = list(await asyncio.gather(*(start_bridge(drain_seconds="1") for _ in range(3))))
    for replica in replicas:
        await replica.wait_for_topic(topics[-1], 3)
    async with running_nginx([replica.port for replica in replicas]) as nginx:
        yield replicas, nginx, topics


async def test_replicas_behind_nginx_read_each_watched_topic_about_once_and_hand_streams_over_exactly(
    stack: tuple[list[BridgeProcess], Nginx, list[str]], cluster: Cluster
) -> None:
    replicas, nginx, topics = stack
    followers = [Follower(nginx.url, topic) for topic in topics for _ in range(STREAMS_PER_TOPIC)]
    produced = Produced(cluster, topics)
    try:
        await asyncio.wait_for(asyncio.gather(*(f.connected.wait() for f in followers)), 30)
        for _ in range(6):
            await produced.send(10)
        await until_all_received(followers, produced)
        before = [await scrape(replica) for replica in replicas]
        ratio = consumed(before) / produced.count
        print(f"records consumed by the {REPLICAS} replicas / records produced: {ratio:.2f}")
        assert ratio <= 1.3, [m.value("topics_watched") for m in before]

        # The replica with the most streams leaves; its browsers come back through nginx to the others.
        leaving = max(range(REPLICAS), key=lambda i: before[i].value("topics_watched") or 0)
        assert (before[leaving].value("topics_watched") or 0) >= 1
        stopping = asyncio.create_task(asyncio.to_thread(replicas[leaving].stop, signal.SIGTERM))
        for _ in range(6):
            await produced.send(10)
            await asyncio.sleep(0.2)
        assert await stopping in CLEAN_EXITS, replicas[leaving].log()
        await until_all_received(followers, produced)
        await asyncio.sleep(1)  # nothing more may come: no record twice
        moved = [f for f in followers if f.connections > 1]
        assert moved, "no stream was on the replica that left"
        for follower in followers:
            assert produced.per_partition(follower.topic, follower.events) == produced.everything(follower.topic)
    finally:
        await asyncio.gather(*(follower.close() for follower in followers))


async def until_all_received(followers: Sequence[Follower], produced: Produced, timeout: float = 60) -> None:
    for _ in range(int(timeout * 10)):
        if all(len(f.events) >= len(produced.offsets[f.topic]) for f in followers):
            return
        await asyncio.sleep(0.1)
    short = [
        (f.topic, len(f.events), len(produced.offsets[f.topic]))
        for f in followers
        if len(f.events) < len(produced.offsets[f.topic])
    ]
    raise AssertionError(f"streams short of records after {timeout} s (topic, received, produced): {short}")
