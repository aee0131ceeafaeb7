"""The bridge on a cluster of three brokers (KRaft, replication factor 3,
min.insync.replicas 2) whose leaders move: the leader killed or shut down
while records flow, a bootstrap address down, a catch-up across a leader move.
Every stream goes on and gets every record exactly once, in partition order;
the time from the leader's loss to the first record after it is printed."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.kafka.localcluster import LocalKafkaCluster
from tests.support.bridgeproc import BridgeProcess, Stream, open_stream
from tests.support.cluster import Cluster, unique_topic
from tests.support.scrape import eventually, scrape
from tests.support.sseparse import Event, Parser

pytestmark = pytest.mark.kafka

PARTITIONS = 3


@pytest.fixture(scope="module")
def brokers() -> Iterator[LocalKafkaCluster]:
    with LocalKafkaCluster().running() as cluster:
        yield cluster


@pytest.fixture
async def three(brokers: LocalKafkaCluster) -> AsyncIterator[LocalKafkaCluster]:
    """The cluster, whole at the start of every test: a node a test stopped is started again after it."""
    yield brokers
    for node in brokers.nodes:
        if node.process is None:
            node.launch()
            await node.wait_ready()


@pytest.fixture
async def bridges() -> AsyncIterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    for bridge in started:
        if bridge.process is not None:
            bridge.stop()


async def serving(started: list[BridgeProcess], bootstrap_servers: str, topic: str, **flags: str) -> BridgeProcess:
    """A bridge serving ``topic`` only: the topics of the module's earlier tests, whose leaders
    moved back when their broker came back, would have their own lines in its log."""
    options = {"topics": topic, **{name.replace("_", "-"): value for name, value in flags.items()}}
    bridge = BridgeProcess(bootstrap_servers, options)
    started.append(bridge)
    await bridge.start()
    await bridge.wait_for_topic(topic, PARTITIONS)
    return bridge


async def led_by(cluster: LocalKafkaCluster, leader: int) -> str:
    """A new topic whose every partition has its replicas on all three brokers, ``leader`` leading."""
    replicas = [leader, *(node.node_id for node in cluster.nodes if node.node_id != leader)]
    return await Cluster(cluster.bootstrap_servers).create_topic(unique_topic("ha"), PARTITIONS, replicas=replicas)


class Flow:
    """Numbered records, round robin over the partitions, from an idempotent
    producer that waits for every in-sync replica (acks=all): a record it
    was told is written survives the loss of its leader."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, pad: int) -> None:
        self._producer = producer
        self._topic = topic
        self._pad = "p" * pad
        self._pending: list[tuple[str, asyncio.Future[Any]]] = []
        self.acked_at: dict[int, float] = {}  # n → when the producer was told it is written

    @property
    def sent(self) -> int:
        return len(self._pending)

    async def send(self, count: int, pace: float = 0.0) -> None:
        for _ in range(count):
            n = self.sent
            value = orjson.dumps({"n": n, "pad": self._pad})
            future = await self._producer.send(self._topic, value, partition=n % PARTITIONS)
            future.add_done_callback(lambda _, n=n: self.acked_at.setdefault(n, time.monotonic()))
            self._pending.append((value.decode(), future))
            if pace:
                await asyncio.sleep(pace)

    async def written(self) -> dict[int, list[str]]:
        """Every record sent, per partition in offset order, once each sent is acknowledged."""
        by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for value, future in self._pending:
            metadata = await future
            by_partition[metadata.partition].append((metadata.offset, value))
        for records in by_partition.values():
            records.sort()
            assert [offset for offset, _ in records] == list(range(len(records))), "the log has a hole or a duplicate"
        return {partition: [value for _, value in records] for partition, records in by_partition.items()}


@asynccontextmanager
async def flow(cluster: LocalKafkaCluster, topic: str, pad: int = 0) -> AsyncIterator[Flow]:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers, enable_idempotence=True, acks="all",
                                linger_ms=5)  # fmt: skip
    await producer.start()
    try:
        yield Flow(producer, topic, pad)
    finally:
        await producer.stop()


def by_partition(events: Iterable[Event]) -> dict[int, list[str]]:
    """What a stream received, per partition the records were sent to (numbered round robin)."""
    grouped: dict[int, list[str]] = defaultdict(list)
    for event in events:
        grouped[orjson.loads(event.data)["n"] % PARTITIONS].append(event.data)
    return dict(grouped)


class Received:
    """Every event of a stream with when it arrived, read in the background."""

    def __init__(self, stream: Stream) -> None:
        self.events: list[tuple[float, Event]] = []
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: Stream) -> None:
        while True:
            event = await stream.next_event(timeout=60)
            self.events.append((time.monotonic(), event))

    async def count(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if self._task.done():
                self._task.result()  # the stream failed: say why
            assert time.monotonic() < deadline, f"{len(self.events)} of {count} events in {timeout} s"
            await asyncio.sleep(0.05)

    def by_partition(self) -> dict[int, list[str]]:
        return by_partition(event for _, event in self.events)

    def first_at_or_after(self, n: int) -> float:
        """When the first event of a record numbered ``n`` or later arrived."""
        return next(at for at, event in self.events if orjson.loads(event.data)["n"] >= n)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Readiness:
    """/readyz polled every 0.1 s in the background: every answer kept."""

    def __init__(self, bridge: BridgeProcess) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self._task = asyncio.create_task(self._poll(bridge))

    async def _poll(self, bridge: BridgeProcess) -> None:
        async with httpx.AsyncClient(base_url=bridge.url) as client:
            while True:
                response = await client.get("/readyz")
                self.answers.append((response.status_code, response.json()))
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def report(capsys: pytest.CaptureFixture[str], what: str, lost_at: float, records: Flow, received: Received,
           sent_before: int) -> None:  # fmt: skip
    """How long the cluster took to take writes again, and the bridge to deliver them."""
    acked = min(at for n, at in records.acked_at.items() if n >= sent_before) - lost_at
    delivered = received.first_at_or_after(sent_before) - lost_at
    with capsys.disabled():
        print(f"\n{what}: the first record sent after it acked {acked:.1f} s later, delivered {delivered:.1f} s later")


async def lose_the_leader_while_records_flow(
    cluster: LocalKafkaCluster,
    bridges: list[BridgeProcess],
    capsys: pytest.CaptureFixture[str],
    how: signal.Signals,
    controller: bool,
) -> BridgeProcess:
    """The lost broker leads every served partition, and the controller quorum
    too if ``controller`` (the worst case: a new controller is elected first)."""
    active = cluster.active_controller()
    lost = next(node for node in cluster.nodes if (node.node_id == active) == controller)
    topic = await led_by(cluster, leader=lost.node_id)
    bridge = await serving(bridges, cluster.bootstrap_servers, topic)
    async with open_stream(bridge.url, topic) as live, flow(cluster, topic) as records:
        received, ready = Received(live), Readiness(bridge)
        sending = asyncio.create_task(records.send(1200, pace=0.01))  # about 15 s of records
        await received.count(150)
        lost_at, sent_before = time.monotonic(), records.sent
        if how == signal.SIGKILL:
            lost.kill()
        else:
            await asyncio.to_thread(lost.stop)  # a controlled shutdown: leadership handed over first
        await sending
        written = await records.written()
        await received.count(1200)
        await asyncio.sleep(0.5)  # a duplicate, if any, would arrive now
        await ready.close()
        await received.close()
    assert received.by_partition() == written
    report(capsys, f"{how.name} of the leader{' and controller' if controller else ''}", lost_at, records, received,
           sent_before)  # fmt: skip
    statuses = {status for status, _ in ready.answers}
    assert statuses == {200}, [answer for answer in ready.answers if answer[0] != 200][:3]
    assert "partitions_without_leader" in ready.answers[-1][1]
    # the move is told once, every partition in it: a line per broker the partitions moved to
    moves = [line for line in bridge.log().splitlines() if "Kafka leader" in line]
    assert 1 <= len(moves) <= PARTITIONS, moves
    assert all(f"from broker {lost.node_id} to" in line for line in moves), moves
    assert sorted(part for line in moves for part in line.split("partition(s) ")[1].split(", ")) == ["0", "1", "2"]
    return bridge


@pytest.mark.parametrize("controller", [False, True], ids=["leader", "leader-and-controller"])
async def test_streams_go_on_exactly_when_the_leader_is_killed(
    three: LocalKafkaCluster, bridges: list[BridgeProcess], capsys: pytest.CaptureFixture[str], controller: bool
) -> None:
    bridge = await lose_the_leader_while_records_flow(three, bridges, capsys, signal.SIGKILL, controller)
    # aiokafka's errors about the dead broker, several a second until it is fenced, are summarised
    client_errors = [line for line in bridge.log().splitlines() if " ERROR aiokafka" in line]
    assert len(client_errors) <= 12, "\n".join(client_errors)


async def test_streams_go_on_exactly_through_a_controlled_shutdown(
    three: LocalKafkaCluster, bridges: list[BridgeProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    await lose_the_leader_while_records_flow(three, bridges, capsys, signal.SIGTERM, controller=True)


async def test_the_bridge_starts_with_a_bootstrap_address_down(
    three: LocalKafkaCluster, bridges: list[BridgeProcess]
) -> None:
    topic = await led_by(three, leader=1)
    down = three.node(3)
    await asyncio.to_thread(down.stop)
    # the address that is down first: the bridge must go on to the next
    addresses = ",".join(node.bootstrap_servers for node in sorted(three.nodes, key=lambda node: node is not down))
    bridge = await serving(bridges, addresses, topic)
    async with open_stream(bridge.url, topic) as live, flow(three, topic) as records:
        received = Received(live)
        await records.send(90)
        written = await records.written()
        await received.count(90)
        await received.close()
    assert received.by_partition() == written


async def test_a_catch_up_goes_on_exactly_while_its_leader_is_killed(
    three: LocalKafkaCluster, bridges: list[BridgeProcess]
) -> None:
    leader = next(node for node in three.nodes if node.node_id != three.active_controller())  # a broker only
    topic = await led_by(three, leader=leader.node_id)
    bridge = await serving(bridges, three.bootstrap_servers, topic, ring_records="20")
    async with flow(three, topic, pad=2000) as records:
        await records.send(6000)  # ~12 MB, more than the socket buffers and the outbox hold
        async with (
            httpx.AsyncClient(base_url=bridge.url, timeout=httpx.Timeout(10.0, read=60.0)) as client,
            client.stream("GET", f"/sse/{topic}", headers={"Last-Event-ID": "0.0.0"}) as resumed,
        ):
            # Not read yet: the catch-up stops where the buffers are full, in the middle of the topic.
            await eventually(bridge, lambda metrics: metrics.value("catchups_in_progress") == 1)
            leader.kill()
            await records.send(300, pace=0.01)  # live records, behind the catch-up, while the leader moves
            assert (await scrape(bridge)).value("catchups_in_progress") == 1  # it was reading Kafka all along
            written = await records.written()
            parser, events = Parser(), []
            async for chunk in resumed.aiter_raw():
                events += parser.feed(chunk)
                if len(events) >= 6300:
                    break
    assert by_partition(events) == written
