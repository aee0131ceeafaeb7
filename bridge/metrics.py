"""Prometheus metrics for ``GET /metrics``, every name prefixed ``kafka_sse_bridge_``.

Nothing is counted here. What happens is counted where it happens, as plain
ints on each channel's ``TopicStats`` (fanout/channel.py): the channel's publish adds once
per batch (events times subscribers), a stream once per write. A collector reads
those counters at scrape time, together with the state the gauges show
(subscribers, ring, consumer lag, catch-ups, Kafka). Scrapes run on the event
loop thread, where that state changes, so they see it consistent without
locks; a scrape costs O(topics * partitions).

Topic labels come from the topics this process has read (counters: every
topic it ever read, so they never go backwards when a topic is released and
read again; ring and lag gauges: the topics it reads now), all of them served
topics, so their number is bounded by what ``--topics`` matches; every label
set a topic can have is there, at 0, from the moment it is first read.

Every app has a registry of its own (``create_app`` makes one), so apps in one
interpreter (tests) share nothing. The bridge runs one process per port with
one Kafka consumer; replicas are separate processes. Prometheus scrapes each
process on its own port and sums across instances: there are no forked
workers sharing a port, so no multiprocess mode is needed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from bridge.fanout.channel import Channel, TopicStats
from bridge.fanout.hub import Hub
from bridge.fanout.latency import BOUNDS, DeliveryLatency
from bridge.http.limits import ConnectionLimits
from bridge.kafka.catchup import CatchUps
from bridge.kafka.decoding import SchemaTopics

PREFIX = "kafka_sse_bridge_"
# Streams cut by the connection limits (reliability issue); listed now so dashboards find them at 0.
RESERVED_CLOSE_REASONS = ("limit",)

_TOPIC_COUNTERS: Sequence[tuple[str, str, Callable[[TopicStats], int]]] = (
    ("streams_opened", "SSE streams started", lambda stats: stats.streams_opened),
    (
        "events_delivered",
        "Record events handed to subscribers: live, replayed from the ring, caught up from Kafka",
        lambda stats: stats.events_delivered,
    ),
    (
        "delivered_bytes",
        "Bytes written to streams, heartbeats aside (a stream over several topics counts under the first by name)",
        lambda stats: stats.delivered_bytes,
    ),
    ("records_consumed", "Records read by this process's Kafka consumer", lambda stats: stats.records_consumed),
    (
        "fell_behind",
        "Live streams whose next events did not fit their outbox: they left the live path, to be caught up in place",
        lambda stats: stats.fell_behind,
    ),
    ("rejoined_live", "Streams that fell behind and came level again", lambda stats: stats.rejoined_live),
)
_TOPIC_GAUGES: Sequence[tuple[str, str, Callable[[Channel], float]]] = (
    ("ring_records", "Records in the ring buffer", lambda channel: len(channel.ring)),
    ("ring_bytes", "Bytes of encoded events in the ring buffer", lambda channel: channel.ring.size_bytes),
    (
        "ring_span_seconds",
        "Newest minus oldest record timestamp in the ring: how far back a resume from memory reaches",
        lambda channel: channel.ring.span_ms / 1000,
    ),
)


class KafkaState(Protocol):
    """What the metrics read of the Kafka source (source.KafkaSource)."""

    @property
    def reachable(self) -> bool: ...
    @property
    def ready(self) -> bool: ...
    @property
    def partitions(self) -> Mapping[str, int]: ...
    @property
    def watchers(self) -> Mapping[str, int]: ...
    @property
    def assignments(self) -> int: ...
    @property
    def releases(self) -> int: ...
    def end_offset(self, topic: str, partition: int) -> int | None: ...
    def log_end_offset(self, topic: str, partition: int) -> int | None: ...


class Restarts(Protocol):
    @property
    def consumer_restarts(self) -> int: ...


class BridgeCollector:
    def __init__(self, hub: Hub, kafka: KafkaState, catchups: CatchUps) -> None:
        self._hub = hub
        self._kafka = kafka
        self._catchups = catchups

    def collect(self) -> Iterator[Metric]:
        hub, kafka = self._hub, self._kafka
        channels = [hub.channels[topic] for topic in sorted(hub.channels)]
        every_stats = sorted(hub.stats.items())  # of every topic ever read, the released ones too
        for name, documentation, counted in _TOPIC_COUNTERS:
            counter = CounterMetricFamily(PREFIX + name, documentation, labels=["topic"])
            for topic, stats in every_stats:
                counter.add_metric([topic], counted(stats))
            yield counter
        subscribers = GaugeMetricFamily(
            PREFIX + "subscribers", "Connected streams: live, waiting or catching up", labels=["topic"]
        )
        for topic, stats in every_stats:
            subscribers.add_metric([topic], stats.connected)
        yield subscribers
        yield from self._paths(every_stats)
        yield from self._topics(kafka)
        yield delivery_latency(hub.latency)
        yield GaugeMetricFamily(
            PREFIX + "rings_memory_bytes",
            "Memory the rings of all topics hold together (events and the records beside them)",
            value=hub.budget.used,
        )
        yield GaugeMetricFamily(
            PREFIX + "rings_memory_budget_bytes", "--ring-total-bytes: what the rings may hold together",
            value=hub.budget.max_bytes,
        )  # fmt: skip
        for name, documentation, measured in _TOPIC_GAUGES:
            gauge = GaugeMetricFamily(PREFIX + name, documentation, labels=["topic"])
            for channel in channels:
                gauge.add_metric([channel.topic], measured(channel))
            yield gauge
        closed = CounterMetricFamily(PREFIX + "streams_closed", "SSE streams ended, by why", labels=["topic", "reason"])
        resumes = CounterMetricFamily(
            PREFIX + "resumes",
            "Streams that did not start live, by how they found their start",
            labels=["topic", "kind"],
        )
        lag = GaugeMetricFamily(
            PREFIX + "consumer_lag_records",
            "Readable end (the last stable offset when reading committed records, else the log end; "
            "as of the last fetch) minus the bridge's position",
            labels=["topic", "partition"],
        )
        held = GaugeMetricFamily(
            PREFIX + "open_transaction_offsets",
            "Log end offset minus the readable end: offsets an open transaction holds back (as of the last fetch)",
            labels=["topic", "partition"],
        )
        for topic, stats in every_stats:
            for reason, count in stats.streams_closed.items():
                closed.add_metric([topic, reason.value], count)
            for reserved in RESERVED_CLOSE_REASONS:
                closed.add_metric([topic, reserved], 0)
            for kind, count in stats.resumes.items():
                resumes.add_metric([topic, kind.value], count)
        for channel in channels:
            topic = channel.topic
            for partition, position in enumerate(channel.position):
                end = self._kafka.end_offset(topic, partition)
                if end is not None:
                    lag.add_metric([topic, str(partition)], end - position)
                    log_end = self._kafka.log_end_offset(topic, partition)
                    held.add_metric([topic, str(partition)], (log_end or end) - end)
        yield from (closed, resumes, lag, held)
        yield CounterMetricFamily(
            PREFIX + "heartbeats", "Heartbeat comments sent", value=sum(s.heartbeats for _, s in every_stats)
        )
        yield CounterMetricFamily(
            PREFIX + "send_failures",
            "Writes to a stream that raised: cut mid-write for being slow, or a connection error",
            value=sum(s.send_failures for _, s in every_stats),
        )
        yield GaugeMetricFamily(
            PREFIX + "catchups_in_progress", "Catch-ups reading Kafka", value=self._catchups.running
        )
        yield GaugeMetricFamily(
            PREFIX + "catchups_waiting", "Clients waiting for a catch-up slot", value=self._catchups.waiting
        )
        yield GaugeMetricFamily(
            PREFIX + "kafka_connected", "1 if the last metadata request was answered", value=int(self._kafka.reachable)
        )
        yield GaugeMetricFamily(PREFIX + "ready", "1 if /readyz answers 200", value=int(self._kafka.ready))
        # Scrapes run on the event loop (metrics.py's header): its tasks, to see none leak
        yield GaugeMetricFamily(PREFIX + "asyncio_tasks", "Tasks on the event loop", value=len(asyncio.all_tasks()))

    def _paths(self, every_stats: Sequence[tuple[str, TopicStats]]) -> Iterator[Metric]:
        """Streams live and behind (fed from the ring, or from Kafka: catching up or waiting to), per topic."""
        live: Counter[str] = Counter()
        ring: Counter[str] = Counter()
        for view in self._hub.all_views():
            topics, on_live, on_ring = view.on_paths()
            for topic in topics:
                live[topic] += on_live
                ring[topic] += on_ring
        kafka = self._catchups.streams_per_topic()
        live_gauge = GaugeMetricFamily(PREFIX + "subscribers_live", "Streams on the live path", labels=["topic"])
        behind = GaugeMetricFamily(
            PREFIX + "subscribers_behind",
            "Streams behind the live path, by what feeds them: the ring, or Kafka (catching up or waiting for a slot)",
            labels=["topic", "source"],
        )
        for topic, _ in every_stats:
            live_gauge.add_metric([topic], live[topic])
            behind.add_metric([topic, "ring"], ring[topic])
            behind.add_metric([topic, "kafka"], kafka[topic])
        yield live_gauge
        yield behind

    def _topics(self, kafka: KafkaState) -> Iterator[Metric]:
        """How many topics are served, read and watched, and how often one was assigned and released."""
        yield GaugeMetricFamily(PREFIX + "topics_served", "Served topics Kafka has (known from metadata)",
                                value=len(kafka.partitions))  # fmt: skip
        yield GaugeMetricFamily(
            PREFIX + "topics_read", "Topics this process reads now: watched, or in the linger after their last stream",
            value=len(self._hub.channels),
        )  # fmt: skip
        yield GaugeMetricFamily(PREFIX + "topics_watched", "Topics with at least one open stream",
                                value=len(kafka.watchers))  # fmt: skip
        yield CounterMetricFamily(PREFIX + "topic_assignments", "Topics assigned to the consumer on their first stream",
                                  value=kafka.assignments)  # fmt: skip
        yield CounterMetricFamily(
            PREFIX + "topic_releases", "Topics unassigned, their ring released, a linger after their last stream",
            value=kafka.releases,
        )  # fmt: skip


def delivery_latency(latency: DeliveryLatency) -> Metric:
    """The stages' bucket counts (fanout/latency.py) as one histogram, cumulative as Prometheus wants."""
    histogram = HistogramMetricFamily(
        PREFIX + "delivery_latency_seconds",
        "Live records' age, from their Kafka timestamp, when fetched by the consumer, published to the "
        "subscribers' outboxes, and written to the connections the batch woke",
        labels=["stage"],
    )
    bounds = [*map(str, BOUNDS), "+Inf"]
    for stage, counts in latency.stages.items():
        cumulative = list(itertools.accumulate(counts.buckets))
        histogram.add_metric([stage], list(zip(bounds, cumulative, strict=True)), counts.sum_ms / 1000)
    return histogram


class FaultsCollector:
    """What the limits refused and the watchdog replaced (http/limits.py, kafka/source.py)."""

    def __init__(self, limits: ConnectionLimits, kafka: Restarts) -> None:
        self._limits = limits
        self._kafka = kafka

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            PREFIX + "streams_refused", "Streams answered 429/503 before they started, by why", labels=["reason"]
        )
        for reason, count in self._limits.refused.items():
            refused.add_metric([reason.value], count)
        yield refused
        yield CounterMetricFamily(
            PREFIX + "consumer_restarts",
            "Kafka consumers replaced by the watchdog after a stall",
            value=self._kafka.consumer_restarts,
        )


class SchemaCollector:
    """The Schema Registry client and the records it could not help decode (kafka/registry.py, decoding.py)."""

    def __init__(self, schemas: SchemaTopics) -> None:
        self._schemas = schemas

    def collect(self) -> Iterator[Metric]:
        stats = self._schemas.registry.stats
        yield GaugeMetricFamily(
            PREFIX + "schema_registry_reachable", "1 if the registry's last answer was one", value=int(stats.reachable)
        )
        yield GaugeMetricFamily(PREFIX + "schemas_cached", "Schemas in memory", value=self._schemas.registry.cached)
        yield CounterMetricFamily(
            PREFIX + "schema_fetch_seconds",
            "Time spent fetching and compiling the schemas fetched (count: fetches; retries included)",
            value=stats.fetch_seconds,
        )
        yield CounterMetricFamily(PREFIX + "schema_fetches", "Schemas fetched", value=stats.fetches)
        errors = CounterMetricFamily(
            PREFIX + "schema_fetch_errors", "Schema fetches given up, by why", labels=["reason"]
        )
        for reason, count in sorted(stats.errors.items()):
            errors.add_metric([reason.value], count)
        yield errors
        undecodable = CounterMetricFamily(
            PREFIX + "undecodable_records", "Records sent as undecodable events, by why", labels=["topic", "reason"]
        )
        for (topic, why), count in sorted(self._schemas.undecodable.items()):
            undecodable.add_metric([topic, why], count)
        yield undecodable


def create_registry(
    hub: Hub, kafka: KafkaState, catchups: CatchUps, schemas: SchemaTopics | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_*: memory, CPU, open files
    PlatformCollector(registry=registry)  # python_info
    registry.register(BridgeCollector(hub, kafka, catchups))
    if schemas is not None and schemas.registry.enabled:
        registry.register(SchemaCollector(schemas))
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry in the format the scraper accepts (Prometheus text or OpenMetrics), and its content type."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
