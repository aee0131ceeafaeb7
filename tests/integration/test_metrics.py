"""GET /metrics after real traffic: the values, not only the names, since a
dashboard reads them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest

from tests.support.bridgeproc import BridgeProcess, open_stream
from tests.support.cluster import Cluster
from tests.support.scrape import eventually
from tests.support.sseparse import Event

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]
PARTITIONS = ("0", "1", "2")


def frame_bytes(events: Sequence[Event]) -> int:
    """What the bridge wrote for these events (one-line values of type message)."""
    return sum(len(f"id: {event.id}\ndata: {event.data}\n\n".encode()) for event in events)


async def test_delivery_subscribers_ring_and_lag(bridge: BridgeProcess, cluster: Cluster, topic: str) -> None:
    values = [orjson.dumps({"n": n}) for n in range(90)]
    async with open_stream(bridge.url, topic) as first, open_stream(bridge.url, topic) as second:
        await cluster.produce(topic, values[:1])
        await asyncio.sleep(1.1)  # the ring's span: between the first record and the others
        await cluster.produce(topic, values[1:])
        events = await first.events(len(values))
        assert await second.events(len(values)) == events
        written = frame_bytes(events)
        metrics = await eventually(
            bridge,
            lambda m: (
                m.value("delivered_bytes_total", topic=topic) == 2 * written
                and (m.value("heartbeats_total") or 0) >= 1  # --heartbeat 1
                and all(m.value("consumer_lag_records", topic=topic, partition=p) == 0 for p in PARTITIONS)
            ),
        )
        assert metrics.value("subscribers", topic=topic) == 2
        assert metrics.value("subscribers_live", topic=topic) == 2
        for source in ("ring", "kafka"):
            assert metrics.value("subscribers_behind", topic=topic, source=source) == 0
        assert metrics.value("fell_behind_total", topic=topic) == 0
        assert metrics.value("rejoined_live_total", topic=topic) == 0
        assert metrics.value("streams_opened_total", topic=topic) == 2
        assert metrics.value("events_delivered_total", topic=topic) == 2 * len(values)
        assert metrics.value("records_consumed_total", topic=topic) == len(values)
        assert metrics.value("ring_records", topic=topic) == len(values)
        assert metrics.value("ring_bytes", topic=topic) == written
        span = metrics.value("ring_span_seconds", topic=topic)
        assert span is not None
        assert 1.0 <= span < 30
        for kind in ("ring", "kafka", "gap", "since"):
            assert metrics.value("resumes_total", topic=topic, kind=kind) == 0
        assert metrics.value("kafka_connected") == 1
        assert metrics.value("ready") == 1
        assert metrics.value("catchups_in_progress") == 0
        assert metrics.value("catchups_waiting") == 0
    metrics = await eventually(bridge, lambda m: m.value("subscribers", topic=topic) == 0)
    assert metrics.value("streams_closed_total", topic=topic, reason="client_left") == 2
    for reason in ("slow", "shutdown", "error", "limit"):
        assert metrics.value("streams_closed_total", topic=topic, reason=reason) == 0
    assert metrics.value("send_failures_total") == 0
    assert any(s.name == "process_resident_memory_bytes" for s in metrics.samples)


async def test_delivery_latency_by_stage(bridge: BridgeProcess, cluster: Cluster, topic: str) -> None:
    """Every live record once per stage, its age taken from its Kafka timestamp."""
    async with open_stream(bridge.url, topic) as client:
        await cluster.produce(topic, [b"fresh"] * 20)
        # stamped a minute ago by its producer: past the last bound of every stage
        await cluster.produce(topic, [b"stale"] * 10, timestamp_ms=int((time.time() - 60) * 1000))
        await client.events(30)
        metrics = await eventually(bridge, lambda m: m.value("delivery_latency_seconds_count", stage="written") == 30)
    sums = []
    for stage in ("fetched", "published", "written"):
        assert metrics.value("delivery_latency_seconds_count", stage=stage) == 30
        assert metrics.value("delivery_latency_seconds_bucket", stage=stage, le="+Inf") == 30
        assert metrics.value("delivery_latency_seconds_bucket", stage=stage, le="30.0") == 20
        assert metrics.value("delivery_latency_seconds_bucket", stage=stage, le="5.0") == 20
        total = metrics.value("delivery_latency_seconds_sum", stage=stage)
        assert total is not None
        assert 10 * 60 <= total < 10 * 60 + 20 * 5 + 10
        sums.append(total)
    assert sums == sorted(sums)  # each stage comes after the one before


async def test_resumes_are_counted_by_kind(start_bridge: StartBridge, cluster: Cluster, topic: str) -> None:
    bridge: BridgeProcess = await start_bridge(ring_records="10")
    await bridge.wait_for_topic(topic, 3)
    await bridge.watch(topic)  # read from now on: the ring gets the records
    await cluster.produce(topic, [orjson.dumps({"n": n}) for n in range(30)])
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as from_kafka:
        last = (await from_kafka.events(30))[-1].id
    async with open_stream(bridge.url, topic, last_event_id=last):
        pass  # the ring covers the live position, with nothing to replay
    async with open_stream(bridge.url, topic, query={"since": "earliest"}) as since:
        await since.events(30)
    await cluster.delete_records(topic, {0: 5})
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as past_retention:
        assert (await past_retention.next_event()).type == "gap"
        await past_retention.events(25)
    metrics = await eventually(bridge, lambda m: m.value("subscribers", topic=topic) == 0)
    resumes = {
        kind: metrics.value("resumes_total", topic=topic, kind=kind) for kind in ("ring", "kafka", "gap", "since")
    }
    assert resumes == {"ring": 1, "kafka": 2, "gap": 1, "since": 1}
    # every record event a client got, counted once, whether from Kafka or the ring
    assert metrics.value("events_delivered_total", topic=topic) == 30 + 0 + 30 + 25
    assert metrics.value("records_consumed_total", topic=topic) == 30
    assert metrics.value("ring_records", topic=topic) == 10
    assert metrics.value("streams_closed_total", topic=topic, reason="client_left") == 1 + 4  # watch() and the four
    assert metrics.value("catchups_in_progress") == 0


async def stalled_reader(bridge: BridgeProcess, topic: str, last_event_id: str | None = None) -> asyncio.StreamWriter:
    """A connection that never reads: once the socket buffers are full, the bridge's send to it blocks."""
    _, writer = await asyncio.open_connection("127.0.0.1", bridge.port, limit=1024)
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n{resume}\r\n".encode())
    await writer.drain()
    return writer


# ~12 MB: more than the loopback socket buffers plus a 1 MiB outbox
LARGE = [orjson.dumps({"n": n, "pad": "y" * 2000}) for n in range(6000)]


async def test_catch_ups_running_and_waiting(start_bridge: StartBridge, cluster: Cluster, topic: str) -> None:
    bridge: BridgeProcess = await start_bridge(ring_records="10", max_catchups="1")
    await bridge.wait_for_topic(topic, 3)
    await cluster.produce(topic, LARGE)
    stalled = await stalled_reader(bridge, topic, last_event_id="0.0.0")  # its catch-up keeps the only slot
    await eventually(bridge, lambda m: m.value("catchups_in_progress") == 1)
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as waiting:
        metrics = await eventually(bridge, lambda m: m.value("catchups_waiting") == 1)
        assert metrics.value("catchups_in_progress") == 1
        assert metrics.value("subscribers_behind", topic=topic, source="kafka") == 2  # reading, and waiting
        assert metrics.value("subscribers", topic=topic) == 2
        stalled.close()
        await stalled.wait_closed()
        await waiting.events(len(LARGE), timeout=60)
        metrics = await eventually(bridge, lambda m: m.value("catchups_in_progress") == 0)
        assert metrics.value("catchups_waiting") == 0
        assert metrics.value("subscribers", topic=topic) == 1


async def test_a_slow_client_is_counted(start_bridge: StartBridge, cluster: Cluster, topic: str) -> None:
    bridge: BridgeProcess = await start_bridge(outbox_bytes="1048576", stalled_client_seconds="2")
    await bridge.wait_for_topic(topic, 3)
    stalled = await stalled_reader(bridge, topic)
    await eventually(bridge, lambda m: m.value("subscribers", topic=topic) == 1)
    await cluster.produce(topic, LARGE)
    metrics = await eventually(bridge, lambda m: m.value("streams_closed_total", topic=topic, reason="slow") == 1)
    stalled.close()
    await stalled.wait_closed()
    assert metrics.value("subscribers", topic=topic) == 0
    assert (metrics.value("fell_behind_total", topic=topic) or 0) >= 1  # its outbox filled before it was cut
    assert metrics.value("subscribers_behind", topic=topic, source="ring") == 0
    assert metrics.value("subscribers_behind", topic=topic, source="kafka") == 0
    # cut while its writer was blocked in send
    assert (metrics.value("send_failures_total") or 0) >= 1
    # the cut can come before the reader's last batch: the reader still takes every record
    await eventually(bridge, lambda m: m.value("records_consumed_total", topic=topic) == len(LARGE))
