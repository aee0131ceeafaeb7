"""Scenario latency: what the bridge adds to the producer pipeline's own latency.

For 1 and 1,000 subscribers (``--latency-subscribers``; a fresh bridge each; with ``--baseline-source``
also a bridge of that code, right before, on the same topic, for the
before/after ratio in one run) and each rate, records are
produced for STEP_SECONDS; over the steady window after WARMUP_SECONDS:

- end-to-end p50/p99 (receive time minus the send time in the record, every
  event of up to SAMPLED_CONNECTIONS connections) and the worst p99 of any one
  second (the load client reports every second);
- the producer pipeline alone in the same step (kcat → broker → a plain
  aiokafka consumer answered at the first byte, fanout.kafka_latency), and the
  bridge's added p50/p99: its own minus the pipeline's;
- the cadence of writes per stream: reads that returned data per stream per
  second at the load client (each write of the bridge arrives as one read,
  unless the client fell behind and two arrive together), and events per read;
- the bridge's own breakdown from its /metrics histogram
  (kafka_sse_bridge_delivery_latency_seconds), p50/p99 per stage over the window.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.fanout import kafka_latency, percentile
from bench.processes import Context, CpuMeter, LoadClient, Server, producing, stop

SUBSCRIBERS = (1, 1000)
RATES = (1000, 4000)  # records/s
STEP_SECONDS = 8.0
WARMUP_SECONDS = 2.0
DRAIN_SECONDS = 3.0
SAMPLED_CONNECTIONS = 100  # at most: every n/100-th connection measures latency
HISTOGRAM = "kafka_sse_bridge_delivery_latency_seconds"
Buckets = dict[str, list[tuple[float, float]]]  # per stage: (upper bound s, cumulative count)


@dataclass(frozen=True)
class LatencyStep:
    code: str  # "this tree", or the baseline's folder
    subscribers: int
    rate: int  # records/s
    p50_ms: float | None
    p99_ms: float | None
    worst_second_p99_ms: float | None
    kafka_p50_ms: float | None
    kafka_p99_ms: float | None
    added_p50_ms: float | None  # the bridge's p50 minus the pipeline's, same step
    added_p99_ms: float | None
    writes_per_stream_per_s: float  # reads with data at the client, per stream
    events_per_write: float
    stages_ms: dict[str, tuple[float | None, float | None]]  # the bridge's histogram: p50, p99 per stage
    server_cpu_percent: float
    load_average: tuple[float, float, float]


def run(context: Context, topic: str, rates: Sequence[int] = RATES, baseline: Path | None = None,
        subscriber_counts: Sequence[int] = SUBSCRIBERS) -> list[LatencyStep]:  # fmt: skip
    steps: list[LatencyStep] = []
    codes = [baseline, None] if baseline is not None else [None]
    for subscribers, code in itertools.product(subscriber_counts, codes):
        server = context.start_server("bridge", topic, code)
        bound = len(rates) * (STEP_SECONDS + DRAIN_SECONDS) + 120
        client = LoadClient.start(context.client, server, topic, context.workdir / f"client-{topic}-{subscribers}.log",
                                  "-n", str(subscribers), "-sample", str(max(1, subscribers // SAMPLED_CONNECTIONS)),
                                  "-interval", "1", "-seconds", str(bound))  # fmt: skip
        try:
            client.wait_for(partial(_connected, count=subscribers), 60, f"{subscribers} streams")
            for rate in rates:
                name = str(code or "this tree")
                print(f"  latency, {name}: {rate} records/s x {subscribers} subscriber(s) ...", flush=True)
                steps.append(_step(context, server, client, topic, name, subscribers, rate))
                last = steps[-1]
                print(f"    p50 {last.p50_ms} ms (Kafka {last.kafka_p50_ms}), worst second's p99 "
                      f"{last.worst_second_p99_ms} ms, {last.writes_per_stream_per_s} writes/s per stream",
                      flush=True)  # fmt: skip
                time.sleep(DRAIN_SECONDS)
        finally:
            client.finish()
            stop(server.process)
    return steps


def _connected(report: dict[str, Any], count: int) -> bool:
    return bool(report["connected"] >= count)


def _step(context: Context, server: Server, client: LoadClient, topic: str, code: str, subscribers: int,
          rate: int) -> LatencyStep:  # fmt: skip
    log = context.workdir / f"producer-{topic}.log"
    window = STEP_SECONDS - WARMUP_SECONDS - 0.5
    meter = CpuMeter({"server": server.pid})
    with producing(context.client, context.bootstrap_servers, topic, rate, STEP_SECONDS, context.value_bytes,
                   log), multiprocessing.get_context("spawn").Pool(1) as pool:  # fmt: skip
        floor = pool.apply_async(kafka_latency, (context.bootstrap_servers, topic, WARMUP_SECONDS, window))
        time.sleep(WARMUP_SECONDS)
        histogram_before = stage_buckets(server.port)
        meter.start()
        start = time.time()
        time.sleep(window)
        end = time.time()
        cpu = meter.percent()
        histogram_after = stage_buckets(server.port)
        kafka = floor.get(timeout=60)
    reports = client.between(start, end)
    buckets: Counter[int] = Counter()
    worst: float | None = None
    for report in reports[1:]:
        second = Counter({int(index): count for index, count in report["latency_buckets"].items()})
        buckets.update(second)
        p99 = percentile(second, 0.99)
        worst = p99 if worst is None or (p99 is not None and p99 > worst) else worst
    first, last = reports[0], reports[-1]
    seconds = last["time"] - first["time"]
    reads, events = last["reads"] - first["reads"], last["events"] - first["events"]
    p50, p99 = percentile(buckets, 0.5), percentile(buckets, 0.99)
    return LatencyStep(
        code=code, subscribers=subscribers, rate=rate, p50_ms=p50, p99_ms=p99, worst_second_p99_ms=worst,
        kafka_p50_ms=kafka[0], kafka_p99_ms=kafka[1], added_p50_ms=_minus(p50, kafka[0]),
        added_p99_ms=_minus(p99, kafka[1]),
        writes_per_stream_per_s=round(reads / subscribers / seconds, 1),
        events_per_write=round(events / reads, 1) if reads else 0.0,
        stages_ms=stage_quantiles(histogram_before, histogram_after),
        server_cpu_percent=cpu["server"], load_average=os.getloadavg(),
    )  # fmt: skip


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def stage_buckets(port: int) -> Buckets:
    """The bridge's latency histogram now."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    stages: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != HISTOGRAM:
            continue
        for sample in family.samples:
            if sample.name == HISTOGRAM + "_bucket":
                stages.setdefault(sample.labels["stage"], []).append((float(sample.labels["le"]), sample.value))
    return {stage: sorted(buckets) for stage, buckets in stages.items()}


def stage_quantiles(before: Buckets, after: Buckets) -> dict[str, tuple[float | None, float | None]]:
    """p50 and p99 per stage, ms, of what was counted between two scrapes (as PromQL's histogram_quantile)."""
    quantiles: dict[str, tuple[float | None, float | None]] = {}
    for stage, buckets in after.items():
        counted = [(le, count - old) for (le, count), (_, old) in zip(buckets, before[stage], strict=True)]
        quantiles[stage] = (_quantile(counted, 0.5), _quantile(counted, 0.99))
    return quantiles


def _quantile(cumulative: Sequence[tuple[float, float]], share: float) -> float | None:
    total = cumulative[-1][1]
    if not total:
        return None
    lower, below = 0.0, 0.0
    for le, count in cumulative:
        if count >= share * total:
            if math.isinf(le):
                return round(lower * 1000, 2)
            return round(1000 * (lower + (le - lower) * (share * total - below) / (count - below)), 2)
        lower, below = le, count
    raise AssertionError("unreachable: the last bucket holds the total")


def table_rows(steps: Sequence[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in steps:
        stages = [s["stages_ms"].get(stage, (None, None)) for stage in ("fetched", "published", "written")]
        rows.append([s["code"], s["subscribers"], s["rate"], s["p50_ms"], s["p99_ms"], s["worst_second_p99_ms"],
                     s["kafka_p50_ms"], s["kafka_p99_ms"], s["added_p50_ms"], s["added_p99_ms"],
                     s["writes_per_stream_per_s"], s["events_per_write"], *(f"{p50}/{p99}" for p50, p99 in stages),
                     s["server_cpu_percent"], "/".join(f"{x:.1f}" for x in s["load_average"])])  # fmt: skip
    return rows


TABLE_HEADER = ["code", "subscribers", "records/s", "p50 ms", "p99 ms", "worst 1 s p99", "Kafka p50", "Kafka p99",
                "added p50", "added p99", "writes/s/stream", "events/write", "fetched p50/p99", "published p50/p99",
                "written p50/p99", "server CPU%", "load avg"]  # fmt: skip
