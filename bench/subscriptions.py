"""Filtered fan-out: 1,000 subscribers over 10 distinct filters and 3 topics,
beside 1,000 unfiltered subscribers of the same topics, in the same run.

1. starts a real local broker and three topics of 3 partitions, then the
   bridge as users run it (its own process, default settings);
2. for each scenario, 1,000 streams are opened by a client process of its own
   (uvloop, raw sockets): ``unfiltered`` spreads them over ``/sse/A``,
   ``/sse/B`` and ``/sse/C``; ``filtered`` gives 100 each to 10 distinct
   subscriptions (key, header and JSON-field filters, one to three topics,
   some streams over several topics);
3. a producer process of its own sends records round robin over the topics at
   a fixed rate for ``--seconds``; each value carries its send time, so the
   client measures latency (receive minus send) on every tenth stream;
4. reported per scenario and rate: events/s offered (what the filters select,
   counted by evaluating them on the produced records), events/s delivered in
   the steady window, p50 and p99 latency, the bridge's CPU share, and the
   machine's other CPU use meanwhile (other work skews every figure).

Run from the repository root::

    python -m bench.subscriptions [--rates 200,1000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlencode

import orjson
import uvloop
from aiokafka import AIOKafkaProducer

from bench.chunked import ChunkedDecoder
from bench.processes import TOPIC_PARTITIONS, cpu_seconds, create_topic, machine_busy_seconds, start_bridge, stop
from bridge.kafka.local import LocalKafka, free_port
from bridge.wire.filters import parse_filter
from bridge.wire.formats import ParsedRecord

SUBSCRIBERS = 1000
TOPICS = ("bench-sub-a", "bench-sub-b", "bench-sub-c")
WARMUP_SECONDS = 1.5
DRAIN_SECONDS = 3.0
SAMPLE_EVERY = 10  # streams whose latency is measured
A, B, C = TOPICS
# (topics, filter query): ten distinct subscriptions of the filtered scenario
FILTERED: list[tuple[tuple[str, ...], list[tuple[str, str]]]] = [
    ((A,), [("where", "type==alert")]),
    ((A, B, C), [("where", "type==alert")]),
    ((B,), [("key", "k1")]),
    ((C,), [("key", "k2"), ("key", "k3")]),
    ((A, B), [("header.region", "eu")]),
    ((A,), [("where", "type==info"), ("header.region", "us")]),
    ((B,), [("where", "level==3")]),
    ((B, C), [("where", "user.id==7")]),
    ((C,), [("key", "k5"), ("where", "type==debug")]),
    ((A, C), [("where", "type==order")]),
]
UNFILTERED: list[tuple[tuple[str, ...], list[tuple[str, str]]]] = [((topic,), []) for topic in TOPICS]
TYPES = ("alert", "info", "debug", "order", "audit")


@dataclass(frozen=True)
class Record:
    """A produced record, as the filters see it."""

    topic: str
    key: bytes
    headers: tuple[tuple[str, bytes], ...]
    value: bytes
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


def record(n: int, sent: float) -> Record:
    value = {"ts": sent, "n": n, "type": TYPES[n % 5], "level": n % 4, "user": {"id": n % 13}, "pad": "x" * 40}
    region = (b"eu", b"us")[n % 2]
    return Record(TOPICS[n % 3], f"k{n % 10}".encode(), (("region", region),), orjson.dumps(value))


def path_of(topics: Sequence[str], query: list[tuple[str, str]]) -> str:
    if len(topics) == 1:
        return f"/sse/{topics[0]}" + (f"?{urlencode(query)}" if query else "")
    return "/sse?" + urlencode([*(("topic", t) for t in topics), *query])


def selected_share(subscriptions: Sequence[tuple[tuple[str, ...], list[tuple[str, str]]]]) -> float:
    """Events per record produced, over all subscribers (the filters evaluated on 3,000 records)."""
    sample = [record(n, 0.0) for n in range(3000)]
    per_record = 0.0
    for topics, query in subscriptions:
        wanted = parse_filter(query)
        share = sum(r.topic in topics and wanted.matches(ParsedRecord(r)) for r in sample) / len(sample)
        per_record += share * SUBSCRIBERS / len(subscriptions)
    return per_record


# ------------------------------------------------------------- the producer


def produce(bootstrap_servers: str, rate: int, seconds: float) -> None:
    uvloop.run(_produce(bootstrap_servers, rate, seconds))


async def _produce(bootstrap_servers: str, rate: int, seconds: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=2)
    await producer.start()
    try:
        started, n = time.time(), 0
        while (now := time.time()) < started + seconds:
            due = int((now - started) * rate)
            for _ in range(due - n):
                made = record(n, time.time())
                await producer.send(made.topic, made.value, key=made.key, headers=list(made.headers))
                n += 1
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()


# --------------------------------------------------------------- the client

_TS = re.compile(rb'"ts":([0-9.]+)')


class Counter(asyncio.Protocol):
    """One stream: events counted per second of arrival; latencies if sampled."""

    def __init__(self, request: bytes, sampled: bool, per_second: dict[int, int], latencies: list[tuple[float, float]],
                 connected: asyncio.Future[None]) -> None:  # fmt: skip
        self.request, self.sampled = request, sampled
        self.per_second, self.latencies, self.connected = per_second, latencies, connected
        self.decoder = ChunkedDecoder()
        self.head = b""
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, data = self.head.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            self.head = None  # type: ignore[assignment]
            if not self.connected.done():
                self.connected.set_result(None)
        now = time.time()
        for piece in self.decoder.feed(data):
            buffer = self.pending + piece
            end = buffer.rfind(b"\n\n") + 2
            frames, self.pending = buffer[:end], buffer[end:]
            events = frames.count(b"data: ")
            if events:
                second = int(now)
                self.per_second[second] = self.per_second.get(second, 0) + events
                if self.sampled:
                    self.latencies.extend((now, now - float(ts)) for ts in _TS.findall(frames))


def _same(stream: Counter) -> Counter:
    return stream


def run_clients(port: int, paths: list[str], pipe: Connection) -> None:
    uvloop.run(_clients(port, paths, pipe))


async def _clients(port: int, paths: list[str], pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    per_second: dict[int, int] = {}
    latencies: list[tuple[float, float]] = []
    transports = []
    waits = []
    for index, path in enumerate(paths):
        connected: asyncio.Future[None] = loop.create_future()
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        stream = Counter(request, index % SAMPLE_EVERY == 0, per_second, latencies, connected)
        transport, _ = await loop.create_connection(functools.partial(_same, stream), "127.0.0.1", port)
        transports.append(transport)
        waits.append(connected)
    await asyncio.wait_for(asyncio.gather(*waits), 60)
    started_cpu = time.process_time()
    pipe.send("connected")
    await loop.run_in_executor(None, pipe.recv)  # until the parent says stop
    for transport in transports:
        transport.close()
    pipe.send((per_second, latencies, time.process_time() - started_cpu))


# ------------------------------------------------------------------ a step


@dataclass
class Step:
    scenario: str
    rate: int
    offered: int  # events/s the subscriptions select at this rate
    delivered: int
    p50_ms: float
    p99_ms: float
    bridge_cpu_percent: float
    client_cpu_percent: float
    others_cpu_percent: float


def run_step(name: str, subscriptions: list[tuple[tuple[str, ...], list[tuple[str, str]]]], rate: int,
             seconds: float, port: int, bridge_pid: int, bootstrap_servers: str) -> Step:  # fmt: skip
    spawn = multiprocessing.get_context("spawn")
    paths = [path_of(*subscriptions[n % len(subscriptions)]) for n in range(SUBSCRIBERS)]
    ours, theirs = spawn.Pipe()
    client = spawn.Process(target=run_clients, args=(port, paths, theirs), daemon=True)
    client.start()
    try:
        if not ours.poll(90) or ours.recv() != "connected":
            raise RuntimeError("the client did not connect its streams")
        producer = spawn.Process(target=produce, args=(bootstrap_servers, rate, seconds), daemon=True)
        producer.start()
        time.sleep(WARMUP_SECONDS)
        start, bridge_cpu, busy = time.time(), cpu_seconds(bridge_pid), machine_busy_seconds()
        time.sleep(seconds - WARMUP_SECONDS - 0.5)
        end = time.time()
        bridge_used, machine_used = cpu_seconds(bridge_pid) - bridge_cpu, machine_busy_seconds() - busy
        producer.join(seconds + 30)
        time.sleep(DRAIN_SECONDS)
        ours.send("stop")
        per_second, latencies, client_cpu = ours.recv()
    finally:
        client.join(10)
        if client.is_alive():
            client.kill()
    window = [s for s in per_second if start <= s and s + 1 <= end]
    delivered = sum(per_second[s] for s in window) / max(1, len(window))
    in_window = sorted(latency for at, latency in latencies if start <= at <= end)
    wall = end - start
    client_share = client_cpu / (end - start + WARMUP_SECONDS + DRAIN_SECONDS + 1)
    return Step(
        scenario=name, rate=rate, offered=round(rate * selected_share(subscriptions)), delivered=round(delivered),
        p50_ms=round(_quantile(in_window, 0.5) * 1000, 1), p99_ms=round(_quantile(in_window, 0.99) * 1000, 1),
        bridge_cpu_percent=round(100 * bridge_used / wall), client_cpu_percent=round(100 * client_share),
        others_cpu_percent=round(max(0.0, 100 * (machine_used - bridge_used) / wall - 100 * client_share)),
    )  # fmt: skip


def _quantile(values: Sequence[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))] if values else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.subscriptions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="200,1000", help="records/s produced, comma-separated (default 200,1000)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per step (default 8)")
    arguments = parser.parse_args(argv)
    kafka = LocalKafka()
    workdir = Path(tempfile.mkdtemp(prefix="kafka-sse-bench-sub-"))
    bridge = None
    steps = []
    try:
        print("starting Kafka and the bridge ...", flush=True)
        kafka.start()
        for topic in TOPICS:
            create_topic(kafka.bootstrap_servers, topic, TOPIC_PARTITIONS)
        port = free_port()
        bridge = start_bridge(kafka.bootstrap_servers, "bench-sub-*", port, workdir / "bridge.log")
        for topic in TOPICS:
            bridge.wait_ready(topic)
        for rate in (int(r) for r in arguments.rates.split(",")):
            for name, subscriptions in (("unfiltered", UNFILTERED), ("filtered", FILTERED)):
                print(f"  {name}: {rate} records/s, {SUBSCRIBERS} subscribers ...", flush=True)
                steps.append(run_step(name, subscriptions, rate, arguments.seconds, port, bridge.pid,
                                      kafka.bootstrap_servers))  # fmt: skip
                print(f"    {steps[-1]}", flush=True)
    finally:
        if bridge is not None:
            stop(bridge.process)
        kafka.remove()
    print(f"\n{'scenario':<11} {'rec/s':>6} {'offered ev/s':>13} {'delivered':>10} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'bridge cpu':>10} {'client cpu':>10} {'others':>7}")  # fmt: skip
    for step in steps:
        print(f"{step.scenario:<11} {step.rate:>6} {step.offered:>13} {step.delivered:>10} {step.p50_ms:>7} "
              f"{step.p99_ms:>7} {step.bridge_cpu_percent:>9}% {step.client_cpu_percent:>9}% "
              f"{step.others_cpu_percent:>6}%")  # fmt: skip
    with contextlib.suppress(OSError):
        os.rmdir(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
