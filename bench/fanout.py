"""Scenario (a), fan-out: 1,000 subscribers on one topic, the producer's rate
stepped up until delivery falls behind.

Each step produces at a fixed rate for STEP_SECONDS; the first WARMUP_SECONDS
are left out (kcat connecting, queues settling) and the rest is the steady
window: delivered events/s are the load client's event count over it, p50 and
p99 latency (receive time minus the send time in the record) come from every
event of every tenth connection in it. A step falls behind when it delivers
less than BEHIND_SHARE of what was offered, its p99 passes BEHIND_P99_MS, or
streams were dropped; the ladder stops there.
"""

from __future__ import annotations

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

import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.processes import TOPIC_PARTITIONS, Context, CpuMeter, LoadClient, producing, rss_bytes, stop

SUBSCRIBERS = 1000

RATES = (50, 100, 200, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000, 10_000, 12_000)  # records/s
STEP_SECONDS = 6.0
WARMUP_SECONDS = 1.5
DRAIN_SECONDS = 10.0
BEHIND_SHARE = 0.95
BEHIND_P99_MS = 1000.0
BUCKETS_PER_E = 20  # the load client's latency histogram: bucket i is about exp(i / 20) µs


@dataclass(frozen=True)
class Step:
    server: str
    rate: int  # records/s produced
    offered: int  # events/s: rate x subscribers connected
    delivered: int  # events/s over the steady window
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_percent: float
    server_cpu_ns_per_event: (
        float | None
    )  # server CPU time over events delivered: steadier than rates on a busy machine
    client_cpu_percent: float
    broker_cpu_percent: float
    others_cpu_percent: float
    kafka_p50_ms: float | None  # the same records read straight from Kafka: the producer's and broker's share
    kafka_p99_ms: float | None
    server_rss_mb: float
    dropped: int  # streams the server closed during the step
    load_average: tuple[float, float, float]
    behind: bool


def percentile(buckets: Counter[int], share: float) -> float | None:
    """The latency in ms below which ``share`` of the events fell."""
    total = sum(buckets.values())
    if not total:
        return None
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= share * total:
            return round(math.exp((index + 0.5) / BUCKETS_PER_E) / 1000, 2)
    raise AssertionError("unreachable: the shares add up to the total")


def window_figures(reports: Sequence[dict[str, Any]]) -> tuple[float, Counter[int]]:
    """Events/s and latency buckets between the first and last report of a window."""
    first, last = reports[0], reports[-1]
    buckets: Counter[int] = Counter()
    for report in reports[1:]:
        buckets.update({int(index): count for index, count in report["latency_buckets"].items()})
    seconds = last["time"] - first["time"]
    return (last["events"] - first["events"]) / seconds, buckets


def run(context: Context, server_name: str, topic: str, rates: Sequence[int] = RATES,
        source: Path | None = None) -> list[Step]:  # fmt: skip
    """``source``: the bridge of that folder's code (--baseline-source), named ``<server> @ <folder>``."""
    server = context.start_server(server_name, topic, source)
    if source is not None:
        server_name = f"{server_name} @ {source}"
    bound = len(rates) * (STEP_SECONDS + DRAIN_SECONDS) + 120
    client = LoadClient.start(context.client, server, topic, context.workdir / f"client-{topic}.log",
                              "-n", str(SUBSCRIBERS), "-sample", "10", "-seconds", str(bound))  # fmt: skip
    steps: list[Step] = []
    try:
        client.wait_for(lambda r: r["connected"] >= SUBSCRIBERS, 60, f"{SUBSCRIBERS} streams to {server_name}")
        meter = CpuMeter({"server": server.pid, "client": client.process.pid, "broker": context.broker_pid})
        for rate in rates:
            print(f"  {server_name}: {rate} records/s x {SUBSCRIBERS} subscribers ...", flush=True)
            errors_before, produced = client.last["errors"], client.last["events"]
            log = context.workdir / f"producer-{topic}.log"
            window = STEP_SECONDS - WARMUP_SECONDS - 0.2
            with producing(context.client, context.bootstrap_servers, topic, rate, STEP_SECONDS, context.value_bytes,
                           log), multiprocessing.get_context("spawn").Pool(1) as pool:  # fmt: skip
                floor = pool.apply_async(kafka_latency, (context.bootstrap_servers, topic, WARMUP_SECONDS, window))
                time.sleep(WARMUP_SECONDS)
                meter.start()
                start = time.time()
                time.sleep(window)
                end = time.time()
                cpu = meter.percent()
                kafka = floor.get(timeout=60)
            steps.append(_step(server_name, rate, client, start, end, cpu, server.pid, errors_before, kafka))
            print(f"    delivered {steps[-1].delivered} events/s, p99 {steps[-1].p99_ms} ms", flush=True)
            if steps[-1].behind:
                break
            expected = produced + rate * STEP_SECONDS * SUBSCRIBERS
            client.wait_for(partial(_has_events, count=expected), DRAIN_SECONDS, "the step to drain")
    finally:
        client.finish()
        stop(server.process)
    return steps


def _has_events(report: dict[str, Any], count: float) -> bool:
    return bool(report["events"] >= count)


def kafka_latency(bootstrap_servers: str, topic: str, warmup: float, seconds: float) -> tuple[float | None, ...]:
    """In a process of its own: p50 and p99 produce-to-read latency, ms, of a plain
    aiokafka consumer (answered at the first byte) over ``seconds`` after ``warmup``."""
    return uvloop.run(_kafka_latency(bootstrap_servers, topic, warmup, seconds))


async def _kafka_latency(bootstrap_servers: str, topic: str, warmup: float, seconds: float) -> tuple[float | None, ...]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=100)  # fmt: skip
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(TOPIC_PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        buckets: Counter[int] = Counter()
        start = time.monotonic() + warmup
        while (now := time.monotonic()) < start + seconds:
            batch = await consumer.getmany(timeout_ms=100)
            received = time.time_ns()
            if now < start:
                continue
            for records in batch.values():
                for record in records:
                    value = record.value or b""
                    sent = int(value[5 : value.index(b",")])  # {"t":<ns>,...
                    buckets[bucket_of((received - sent) / 1000)] += 1
        return percentile(buckets, 0.5), percentile(buckets, 0.99)
    finally:
        await consumer.stop()


def bucket_of(microseconds: float) -> int:
    """The load client's histogram bucket for a latency."""
    return int(math.log(microseconds) * BUCKETS_PER_E) if microseconds >= 1 else 0


def _step(server: str, rate: int, client: LoadClient, start: float, end: float, cpu: dict[str, float], pid: int,
          errors_before: int, kafka: tuple[float | None, ...]) -> Step:  # fmt: skip
    reports = client.between(start, end)
    delivered, buckets = window_figures(reports)
    connected = reports[0]["connected"]
    p99 = percentile(buckets, 0.99)
    dropped = reports[-1]["errors"] - errors_before
    behind = delivered < BEHIND_SHARE * rate * SUBSCRIBERS or p99 is None or p99 > BEHIND_P99_MS or dropped > 0
    return Step(
        server=server, rate=rate, offered=rate * connected, delivered=round(delivered),
        p50_ms=percentile(buckets, 0.5), p99_ms=p99,
        server_cpu_percent=cpu["server"],
        server_cpu_ns_per_event=round(cpu["server"] * 1e7 / delivered, 1) if delivered else None,
        client_cpu_percent=cpu["client"], broker_cpu_percent=cpu["broker"], others_cpu_percent=cpu["others"],
        kafka_p50_ms=kafka[0], kafka_p99_ms=kafka[1], server_rss_mb=round(rss_bytes(pid) / 2**20, 1),
        dropped=dropped, load_average=os.getloadavg(), behind=behind,
    )  # fmt: skip
