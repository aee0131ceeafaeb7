"""The delivery-latency counts, and the histogram the metrics make of them;
tests/integration/test_metrics.py checks them after real traffic."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from bridge.fanout.latency import BOUNDS, DeliveryLatency
from bridge.metrics import delivery_latency
from tests.support.records import Record

NOW = 1_700_000_000.0  # epoch seconds


def aged(*ms: int) -> list[Record]:
    """Records whose timestamps are ``ms`` before NOW."""
    return [Record(0, offset, b"", timestamp=int(NOW * 1000) - age) for offset, age in enumerate(ms)]


def test_each_record_counts_in_the_first_bucket_its_age_fits_in() -> None:
    latency = DeliveryLatency()
    latency.observe("fetched", aged(0, 1, 3, 10, 11, 40_000, -5), NOW)
    counts = latency.stages["fetched"]
    by_bound = dict(zip([*BOUNDS, float("inf")], counts.buckets, strict=True))
    # 0 ms, 1 ms and a timestamp ahead of the clock: ≤ 1 ms; the bounds are inclusive, as Prometheus' le
    assert by_bound[0.001] == 3
    assert by_bound[0.005] == 1
    assert by_bound[0.01] == 1
    assert by_bound[0.015] == 1
    assert by_bound[float("inf")] == 1
    assert sum(counts.buckets) == counts.count == 7
    assert abs(counts.sum_ms - (0 + 1 + 3 + 10 + 11 + 40_000 - 5)) < 1e-6
    assert latency.stages["published"].count == latency.stages["written"].count == 0


def test_a_large_batch_is_sampled_with_exact_counts() -> None:
    latency = DeliveryLatency()
    # 1,000 records: the first 500 are 40 ms old, the rest 3 ms
    latency.observe("fetched", aged(*([40] * 500 + [3] * 500)), NOW)
    counts = latency.stages["fetched"]
    by_bound = dict(zip([*BOUNDS, float("inf")], counts.buckets, strict=True))
    assert counts.count == sum(counts.buckets) == 1000
    # sampled every 32nd record, each counting for the 32 from it: off by less than one step
    assert abs(by_bound[0.005] - 500) < 32
    assert by_bound[0.005] + by_bound[0.05] == 1000
    assert abs(counts.sum_ms - (500 * 40 + 500 * 3)) < 32 * (40 - 3)


async def test_written_is_counted_once_the_loop_has_run_what_the_batch_woke() -> None:
    latency = DeliveryLatency()
    woken: list[int] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(woken.append, 1)  # a connection the batch woke, queued before the batch's end
    latency.published(aged(2, 3))
    assert latency.stages["published"].count == 2
    assert latency.stages["written"].count == 0
    await asyncio.sleep(0)
    assert woken == [1]
    assert latency.stages["written"].count == 2


def test_the_histogram_is_cumulative_per_stage() -> None:
    latency = DeliveryLatency()
    latency.observe("fetched", aged(1, 4, 4), NOW)
    latency.observe("written", aged(60), NOW)

    class Collector:
        def collect(self) -> list[Metric]:
            return [delivery_latency(latency)]

    registry = CollectorRegistry()
    registry.register(Collector())
    (family,) = text_string_to_metric_families(generate_latest(registry).decode())
    assert family.name == "kafka_sse_bridge_delivery_latency_seconds"
    assert family.type == "histogram"
    samples = {(s.name, s.labels.get("stage"), s.labels.get("le")): s.value for s in family.samples}
    name = family.name
    assert samples[(name + "_bucket", "fetched", "0.001")] == 1
    assert samples[(name + "_bucket", "fetched", "0.002")] == 1
    assert samples[(name + "_bucket", "fetched", "0.005")] == 3
    assert samples[(name + "_bucket", "fetched", "+Inf")] == 3
    assert samples[(name + "_count", "fetched", None)] == 3
    assert abs(samples[(name + "_sum", "fetched", None)] - 0.009) < 1e-9
    assert samples[(name + "_bucket", "written", "0.05")] == 0
    assert samples[(name + "_bucket", "written", "0.075")] == 1
    assert samples[(name + "_count", "published", None)] == 0
