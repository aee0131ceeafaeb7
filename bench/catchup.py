"""Scenario (d), catch-up: one client resuming 1,000,000 records behind, served from Kafka itself.

A client whose Last-Event-ID is older than the bridge's ring gets a reader of
its own (bridge/kafka/catchup.py) that reads Kafka from the client's cursor up to
the live position. The topic (3 partitions) is filled with kcat first; the
bridge starts after that, so it serves the topic from its live end and its
ring holds none of it. One load client stream asks from ``0.0.0`` (the
beginning), checks every id (nothing lost or duplicated) and ends at the
last record: events/s from connecting to the last record.

The naive design cannot resume at all, so this scenario's baseline is the
ceiling of a Python Kafka reader instead: a plain aiokafka consumer (no
group, uvloop, like the bridge) reading the same records in a process of
its own.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.processes import TOPIC_PARTITIONS, BenchError, Context, CpuMeter, LoadClient, create_topic, end_offsets, stop

PRODUCE_SECONDS = 300.0
CATCHUP_SECONDS = 300.0


@dataclass(frozen=True)
class ConsumerJob:
    bootstrap_servers: str
    topic: str
    ends: tuple[int, ...]
    timeout: float


@dataclass(frozen=True)
class ConsumerReport:
    records: int
    value_bytes: int
    positions: list[int]
    polls: int  # getmany calls that returned records
    largest_poll: int  # records returned by one getmany, at most
    seconds: float  # consumer start -> last record
    wall_seconds: float
    cpu_seconds: float


def run_consumer(job: ConsumerJob) -> ConsumerReport:
    """In a process of its own: a plain aiokafka consumer reads the whole topic."""
    cpu, wall = time.process_time(), time.perf_counter()
    records, value_bytes, positions, polls, largest, seconds = uvloop.run(_consume(job))
    return ConsumerReport(records, value_bytes, positions, polls, largest, seconds, time.perf_counter() - wall,
                          time.process_time() - cpu)  # fmt: skip


async def _consume(job: ConsumerJob) -> tuple[int, int, list[int], int, int, float]:
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(bootstrap_servers=job.bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(job.topic, p) for p in range(len(job.ends))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        positions = [0] * len(partitions)
        records = value_bytes = polls = largest = 0
        deadline = time.monotonic() + job.timeout
        while positions < list(job.ends) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if batch:
                polls += 1
                largest = max(largest, sum(map(len, batch.values())))
            for tp, chunk in batch.items():
                records += len(chunk)
                value_bytes += sum(len(record.value or b"") for record in chunk)
                positions[tp.partition] = chunk[-1].offset + 1
        return records, value_bytes, positions, polls, largest, time.perf_counter() - started
    finally:
        await consumer.stop()


def partition_counts(records: int) -> list[int]:
    """Record i goes to partition i % TOPIC_PARTITIONS."""
    return [len(range(p, records, TOPIC_PARTITIONS)) for p in range(TOPIC_PARTITIONS)]


def value_lines(partition: int, count: int, value_bytes: int) -> bytes:
    """``count`` JSON values of about ``value_bytes`` bytes each, one a line, for kcat."""
    filler = b"abcdefghijklmnopqrstuvwxyz0123456789" * (value_bytes // 36 + 2)
    lines = []
    for k in range(count):
        sequence = k * TOPIC_PARTITIONS + partition
        head = b'{"seq":%d,"partition":%d,"pad":"' % (sequence, partition)
        start = sequence % 36
        lines.append(head + filler[start : start + max(0, value_bytes - len(head) - 2)] + b'"}\n')
    return b"".join(lines)


def produce(bootstrap_servers: str, topic: str, files: Sequence[Path]) -> float:
    """One kcat per partition, all at once; the seconds until every one has its acks."""
    started = time.perf_counter()
    deadline = time.monotonic() + PRODUCE_SECONDS
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for partition, path in enumerate(files):
            command = ["kcat", "-P", "-b", bootstrap_servers, "-t", topic, "-p", str(partition), "-z", "lz4",
                       "-X", "linger.ms=20", "-X", "batch.num.messages=10000"]  # fmt: skip
            with path.open("rb") as lines:
                processes.append(subprocess.Popen(command, stdin=lines, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.PIPE))  # fmt: skip
        for process in processes:
            _, errors = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if process.returncode != 0:
                raise BenchError(f"kcat exited with {process.returncode}: {errors.decode(errors='replace')[-2000:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return time.perf_counter() - started


def run(context: Context, records: int) -> dict[str, Any]:
    topic = f"bench-catchup-{os.getpid()}"
    create_topic(context.bootstrap_servers, topic, TOPIC_PARTITIONS)
    files = []
    for partition, count in enumerate(partition_counts(records)):
        files.append(context.workdir / f"catchup-{partition}.txt")
        files[-1].write_bytes(value_lines(partition, count, context.value_bytes))
    print(f"  filling {topic} with {records} records ...", flush=True)
    produce(context.bootstrap_servers, topic, files)
    ends = end_offsets(context.bootstrap_servers, topic, TOPIC_PARTITIONS)
    if ends != partition_counts(records):
        raise BenchError(f"end offsets {ends} differ from the records sent {partition_counts(records)}")

    print("  baseline: a plain aiokafka consumer ...", flush=True)
    meter = CpuMeter({"broker": context.broker_pid})
    job = ConsumerJob(context.bootstrap_servers, topic, tuple(ends), CATCHUP_SECONDS)
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # leaving it terminates the worker
        baseline = pool.apply(run_consumer, (job,))
    baseline_cpu = meter.percent()
    if baseline.positions != ends:
        raise BenchError(f"the baseline consumer stopped at {baseline.positions}, not {ends}")
    baseline_rate = baseline.records / baseline.seconds

    print("  bridge: one client from 0.0.0 ...", flush=True)
    server = context.start_server("bridge", topic)
    try:
        meter = CpuMeter({"server": server.pid, "broker": context.broker_pid})
        started = time.time()
        client = LoadClient.start(context.client, server, topic, context.workdir / "client-catchup.log",
                                  "-n", "1", "-check", "-last-event-id", ".".join("0" * TOPIC_PARTITIONS),
                                  "-target", str(records), "-sample", "1", "-buffer", str(256 * 1024),
                                  "-seconds", str(CATCHUP_SECONDS))  # fmt: skip
        final = client.noted("finished", CATCHUP_SECONDS + 10) if client.process.wait(CATCHUP_SECONDS + 10) == 0 else {}
        bridge_cpu = meter.percent()
    finally:
        stop(server.process)
    seconds = final.get("time", started) - started
    rate = final.get("events", 0) / seconds if seconds > 0 else 0.0
    return {
        "records": records,
        "baseline": {**asdict(baseline), "events_per_s": round(baseline_rate),
                     "broker_cpu_percent": baseline_cpu["broker"]},
        "bridge": {
            "events": final.get("events", 0), "seconds": round(seconds, 3), "events_per_s": round(rate),
            "ratio_to_baseline": round(rate / baseline_rate, 3), "lost": final.get("lost"),
            "duplicated": final.get("duplicates"), "ok": final.get("finished") == 1 and final.get("lost") == 0,
            "server_cpu_percent": bridge_cpu["server"],
            "broker_cpu_percent": bridge_cpu["broker"], "others_cpu_percent": bridge_cpu["others"],
        },
        "load_average": os.getloadavg(),
    }  # fmt: skip
