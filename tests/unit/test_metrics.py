"""Counting in the hub, and what the collector makes of the bridge's state;
tests/integration/test_metrics.py checks the numbers after real traffic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from bridge.config import Settings
from bridge.fanout.channel import Channel, Resume
from bridge.fanout.hub import Hub
from bridge.fanout.outbox import CloseReason, Subscriber
from bridge.fanout.ring import RingBudget
from bridge.kafka.catchup import CatchUps
from bridge.metrics import create_registry, exposition
from tests.support.records import Record, plain


@dataclass
class Kafka:
    """What the collector reads of the Kafka source."""

    end_offsets: Mapping[tuple[str, int], int]
    log_end_offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)  # past an open transaction
    reachable: bool = True
    ready: bool = True
    partitions: Mapping[str, int] = field(default_factory=dict)
    watchers: Mapping[str, int] = field(default_factory=dict)
    assignments: int = 0
    releases: int = 0

    def end_offset(self, topic: str, partition: int) -> int | None:
        return self.end_offsets.get((topic, partition))

    def log_end_offset(self, topic: str, partition: int) -> int | None:
        return self.log_end_offsets.get((topic, partition), self.end_offset(topic, partition))


def channel() -> Channel:
    return Channel("t", (0, 0), ring_records=100, ring_bytes=1 << 20, type_header=None, budget=RingBudget(1 << 30))


async def test_a_live_batch_counts_its_events_once_per_subscriber_that_took_it() -> None:
    topic = channel()
    slow = Subscriber(limit=1024)
    for subscriber in (Subscriber(limit=1 << 20), Subscriber(limit=1 << 20), slow):
        plain(topic).subscribe(subscriber, None)
    topic.publish([Record(0, 0, b"a"), Record(1, 0, b"b")])
    assert topic.stats.events_delivered == 2 * 3
    topic.publish([Record(0, 1, b"x" * 2048)])  # slow had not taken the first batch: it falls behind, not handed this
    assert slow in plain(topic).behind
    assert topic.stats.events_delivered == 2 * 3 + 1 * 2
    assert (topic.stats.fell_behind, topic.stats.rejoined_live) == (1, 0)
    assert await slow.take(1)
    assert await slow.take(1)
    assert topic.stats.events_delivered == 2 * 3 + 1 * 3
    assert (topic.stats.fell_behind, topic.stats.rejoined_live) == (1, 1)


async def test_a_replay_counts_the_events_it_replays() -> None:
    topic = channel()
    topic.publish([Record(0, 0, b"a"), Record(1, 0, b"b"), Record(0, 1, b"c")])
    subscriber = Subscriber(limit=1 << 20)
    plain(topic).subscribe(subscriber, ((1, 0),))
    assert await subscriber.take(1)
    assert topic.stats.events_delivered == 2


async def test_the_collector_reads_counters_and_state_at_scrape_time() -> None:
    hub = Hub(ring_records=2, ring_bytes=1 << 20, ring_total_bytes=1 << 30, type_header=None)
    topic = hub.open_channel("t", (5, 7))
    hub.open_channel("quiet", (0,))
    topic.publish(
        [Record(0, 5, b"a", timestamp=1000), Record(1, 7, b"b", timestamp=2000), Record(0, 6, b"c", timestamp=4500)]
    )
    topic.stats.records_consumed = 3
    topic.stats.streams_opened = 5
    topic.stats.streams_closed[CloseReason.SLOW] = 2
    topic.stats.resumes[Resume.GAP] = 1
    topic.stats.heartbeats = 4
    hub.channels["quiet"].stats.heartbeats = 3
    catchups = CatchUps(Settings(), {})
    catchups.running, catchups.waiting = 1, 2
    registry = create_registry(hub, Kafka({("t", 0): 9, ("t", 1): 8}, {("t", 0): 12}, ready=False), catchups)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"kafka_sse_bridge_{name}", labels)

    assert value("subscribers", topic="t") == 3
    assert value("subscribers", topic="quiet") == 0
    assert value("streams_closed_total", topic="t", reason="slow") == 2
    assert value("streams_closed_total", topic="quiet", reason="limit") == 0  # reserved, there from the start
    assert value("resumes_total", topic="t", kind="gap") == 1
    assert value("resumes_total", topic="quiet", kind="since") == 0
    assert value("records_consumed_total", topic="t") == 3
    assert value("ring_records", topic="t") == 2
    assert value("ring_span_seconds", topic="t") == 2.5
    assert value("consumer_lag_records", topic="t", partition="0") == 9 - 7
    assert value("consumer_lag_records", topic="t", partition="1") == 8 - 8
    assert value("consumer_lag_records", topic="quiet", partition="0") is None  # not fetched yet
    assert value("open_transaction_offsets", topic="t", partition="0") == 12 - 9
    assert value("open_transaction_offsets", topic="t", partition="1") == 0
    assert value("open_transaction_offsets", topic="quiet", partition="0") is None
    assert value("heartbeats_total") == 7
    assert value("catchups_in_progress") == 1
    assert value("catchups_waiting") == 2
    assert value("kafka_connected") == 1
    assert value("ready") == 0


async def test_registries_belong_to_their_app() -> None:
    hubs = [Hub(ring_records=10, ring_bytes=1 << 20, ring_total_bytes=1 << 30, type_header=None) for _ in range(2)]
    registries = [create_registry(hub, Kafka({}), CatchUps(Settings(), {})) for hub in hubs]
    hubs[0].open_channel("t", (0,)).stats.streams_opened = 1
    hubs[1].open_channel("t", (0,))
    assert [r.get_sample_value("kafka_sse_bridge_streams_opened_total", {"topic": "t"}) for r in registries] == [1, 0]


async def test_the_scraper_chooses_the_format() -> None:
    registry = create_registry(
        Hub(ring_records=1, ring_bytes=1, ring_total_bytes=1 << 30, type_header=None),
        Kafka({}),
        CatchUps(Settings(), {}),
    )
    text, content_type = exposition(registry, None)
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(text.decode())}
    assert {"kafka_sse_bridge_ready", "kafka_sse_bridge_heartbeats", "process_resident_memory_bytes"} <= names
    openmetrics, content_type = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert openmetrics.endswith(b"# EOF\n")
