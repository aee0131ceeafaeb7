"""Scenario (e), topics: 200 served topics with traffic, streams on 5 of them.

200 topics x 3 partitions receive 20,000 records/s in all (one record to
every topic every 10 ms, 200-byte values carrying their send time;
``--topics-rate`` sets another rate). The
bridge serves all of them (``--topics bench-topics-*``) and 5 streams watch 5
topics. Two runs of the same process kind, one after the other:

- ``watched``: the bridge as users run it (it reads only the watched topics);
- ``read-everything``: the same bridge with a linger of 30 days, each of the
  200 topics watched once by a short stream first, so it reads every served
  topic as the bridge did before topics were read only while watched.

Over the same window each run reports the bridge's CPU, its RSS growth
(from before the first stream to the end of the window) and the records it
read from Kafka per second (its own ``records_consumed_total``). The
``watched`` run then opens one stream on each of 50 topics nobody watched yet,
one after another: the time from the request to the first event, and from
that event's production to its arrival.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.processes import BENCH, TOPIC_PARTITIONS, Context, CpuMeter, Server, rss_bytes, spawn, start_bridge, stop
from bridge.kafka.local import free_port

TOPICS = 200
RATE = 20_000  # records/s over all topics, by default: a record to every topic every 10 ms
VALUE_BYTES = 200
WATCHED = 5
FIRST_EVENT_TOPICS = 50
WARM_SECONDS = 5.0
WINDOW_SECONDS = 20.0
PRODUCE_SECONDS = 300.0  # the producers' bound; both runs finish well within it
PRODUCERS = 4  # processes, each sending to a quarter of the topics: one Python producer cannot send 20,000/s here
LONG_LINGER = str(30 * 86400)
PREFIX = "bench-topics-"


@dataclass(frozen=True)
class Run:
    name: str
    cpu_percent: float
    rss_start_mb: float
    rss_end_mb: float
    rss_growth_mb: float
    records_read_per_s: float
    others_cpu_percent: float
    events_received: int
    produced_per_s: float


def _names(run_id: str) -> list[str]:
    return [f"{PREFIX}{run_id}-{n:03d}" for n in range(TOPICS)]


async def _create(bootstrap_servers: str, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, TOPIC_PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


def produce(bootstrap_servers: str, names: Sequence[str], tick_seconds: float, seconds: float) -> None:
    """In a process of its own (``python -m bench.topics``): a record to each of ``names`` every tick."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=2, acks=1)
        await producer.start()
        try:
            pad = "x" * (VALUE_BYTES - 40)
            deadline = time.monotonic() + seconds
            tick = time.monotonic()
            while time.monotonic() < deadline:
                value = orjson.dumps({"sent_ns": time.time_ns(), "pad": pad})
                for name in names:
                    await producer.send(name, value)
                tick += tick_seconds
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
        finally:
            await producer.stop()

    asyncio.run(run())


async def _produced(bootstrap_servers: str, names: Sequence[str]) -> int:
    """Records in all the topics: the sum of their end offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, request_timeout_ms=120_000
    )  # a broker busy with 20,000 records/s on 2 cores is slow
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(n, p) for n in names for p in range(TOPIC_PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _consumed(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kafka_sse_bridge_records_consumed_total{"))  # fmt: skip


async def _watch(client: httpx.AsyncClient, topic: str, stop_at: float, counts: list[int]) -> None:
    async with client.stream("GET", f"/sse/{topic}") as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                counts[0] += 1
            if time.monotonic() > stop_at:
                return


async def _first_event(client: httpx.AsyncClient, topic: str) -> tuple[float, float]:
    """Request → first event, and the first event's production → its arrival, in ms."""
    requested = time.monotonic()
    async with client.stream("GET", f"/sse/{topic}") as response:
        if response.status_code != 200:
            raise RuntimeError(f"the stream of {topic} answered {response.status_code}: {await response.aread()!r}")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                arrived, now_ns = time.monotonic(), time.time_ns()
                sent_ns = orjson.loads(line[5:])["sent_ns"]
                return 1000 * (arrived - requested), (now_ns - sent_ns) / 1e6
    raise RuntimeError(f"the stream of {topic} ended without an event")


async def _measure(server: Server, names: Sequence[str], pin_all: bool, context: Context) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=TOPICS + 10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=httpx.Timeout(10.0, read=30.0),
                                 limits=limits) as client:  # fmt: skip
        rss_start = rss_bytes(server.pid)
        if pin_all:  # every topic watched once: read from then on, for the 30-day linger
            await _pin(client, names)
        counts = [0]
        stop_at = time.monotonic() + WARM_SECONDS + WINDOW_SECONDS + 1
        watching = [asyncio.create_task(_watch(client, name, stop_at, counts)) for name in names[:WATCHED]]
        await asyncio.sleep(WARM_SECONDS)
        meter = CpuMeter({"server": server.pid})
        produced = await _produced(context.bootstrap_servers, names)
        consumed, started = await _consumed(client), time.monotonic()
        await asyncio.sleep(WINDOW_SECONDS)
        read_per_s = (await _consumed(client) - consumed) / (time.monotonic() - started)
        produced_per_s = (await _produced(context.bootstrap_servers, names) - produced) / (time.monotonic() - started)
        cpu = meter.percent()
        rss_end = rss_bytes(server.pid)
        await asyncio.gather(*watching)
        run = Run("read-everything" if pin_all else "watched", cpu["server"], round(rss_start / 2**20, 1),
                  round(rss_end / 2**20, 1), round((rss_end - rss_start) / 2**20, 1), round(read_per_s),
                  cpu["others"], counts[0], round(produced_per_s))  # fmt: skip
        result: dict[str, Any] = asdict(run)
        if not pin_all:
            first = [await _first_event(client, name) for name in names[WATCHED : WATCHED + FIRST_EVENT_TOPICS]]
            result["first_event"] = {
                "topics": len(first),
                "request_p50_ms": round(_quantile([r for r, _ in first], 0.5), 1),
                "request_p99_ms": round(_quantile([r for r, _ in first], 0.99), 1),
                "produced_p50_ms": round(_quantile([p for _, p in first], 0.5), 1),
                "produced_p99_ms": round(_quantile([p for _, p in first], 0.99), 1),
            }
        return result


async def _pin(client: httpx.AsyncClient, names: Sequence[str], attempts: int = 10) -> None:
    """A first event from every topic, 20 streams at a time, again after a 503 (Kafka busy: the browser's retry)."""
    left = list(names)
    for _ in range(attempts):
        for start in range(0, len(left), 20):
            await asyncio.gather(*(_first_event(client, name) for name in left[start : start + 20]),
                                 return_exceptions=True)  # fmt: skip
        read = {entry["topic"] for entry in (await client.get("/topics")).json()["topics"] if entry["read"]}
        left = [name for name in left if name not in read]
        if not left:
            return
        await asyncio.sleep(2)
    raise RuntimeError(f"{len(left)} topics still not read after {attempts} rounds")


def _quantile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if len(values) > 1 else values[0]


def run(context: Context, rate: int = RATE) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for pin_all in (False, True):
        run_id = f"{'all' if pin_all else 'w'}{int(time.time()) % 100000}"
        names = _names(run_id)
        asyncio.run(_create(context.bootstrap_servers, names))
        tick = str(TOPICS / rate)  # each topic gets a record every tick
        producers = [spawn([sys.executable, "-m", "bench.topics", context.bootstrap_servers, run_id, str(n), tick],
                           context.workdir / f"topics-producer-{run_id}-{n}.log", cwd=BENCH.parent)
                     for n in range(PRODUCERS)]  # fmt: skip
        extra = ("--linger-seconds", LONG_LINGER) if pin_all else ()
        log = context.workdir / f"topics-bridge-{run_id}.log"
        server = start_bridge(context.bootstrap_servers, f"{PREFIX}{run_id}-*", free_port(), log, extra)
        try:
            time.sleep(2)  # the producers are up to rate
            if any(producer.poll() is not None for producer in producers):
                raise RuntimeError(f"a producer exited; see {context.workdir}")
            print(f"  {'read-everything' if pin_all else 'watched'}: {TOPICS} topics, {rate} records/s ...", flush=True)
            runs.append(asyncio.run(_measure(server, names, pin_all, context)))
        finally:
            stop(server.process)
            for producer in producers:
                stop(producer)
    watched, everything = runs
    return {
        "topics": TOPICS, "partitions": TOPIC_PARTITIONS, "rate": rate, "watched_topics": WATCHED,
        "runs": runs,
        "ratios": {
            "cpu": round(watched["cpu_percent"] / everything["cpu_percent"], 3),
            "records_read": round(watched["records_read_per_s"] / everything["records_read_per_s"], 3),
            "rss_growth": round(watched["rss_growth_mb"] / everything["rss_growth_mb"], 3)
            if everything["rss_growth_mb"] > 0 else None,
        },
    }  # fmt: skip


if __name__ == "__main__":
    bootstrap, topic_run, share, tick_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    produce(bootstrap, _names(topic_run)[share::PRODUCERS], tick_seconds, PRODUCE_SECONDS)
