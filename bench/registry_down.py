"""Memory while the Schema Registry is down: its schema topic waits, nothing else grows.

Starts a real local broker, a real Apicurio Registry and the bridge (its own
process) serving an Avro topic (``--schema-topics``) and a JSON topic, one
stream open on each. A producer writes ``--rate`` records a second to each
topic throughout; the Avro records are written by confluent-kafka's
serializer, and one in ``UNKNOWN_SHARE`` carries a schema id the bridge has
not fetched yet (registered before the stop, first asked for while the
registry is down). The run has three phases:

1. ``--up-seconds`` with the registry up (the known schema is fetched; the rings fill);
2. ``--down-seconds`` with the registry stopped;
3. ``--after-seconds`` with it started again.

Every second it samples the bridge's RSS (from /proc), the events each stream
received and the schema topic's consumer lag (from /metrics). The bound:
during phase 2 the RSS stays under the RSS at the end of phase 1 plus
``--ring-total-bytes`` (the rings may fill with undecodable events, larger
than decoded ones) plus ``SLACK_BYTES`` (fetch buffers, allocator); the JSON
stream keeps its rate; the Avro topic's unread records stay in Kafka (its lag
grows) rather than in the bridge. Not part of the test suite. Run from the
repository root (needs Java 21+, like the tests)::

    python -m bench.registry_down [--rate 300] [--up-seconds 30] [--down-seconds 60] [--after-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench.local import paced
from bench.processes import create_topic, rss_bytes, start_bridge, stop
from bench.schemas import AVRO_SCHEMA, reading
from bridge.kafka.local import LocalKafka, free_port
from bridge.kafka.localregistry import LocalRegistry
from tests.support.schemas import Serializers

MIB = 1024 * 1024
PARTITIONS = 3
RING_TOTAL_BYTES = 8 * MIB  # the rings' shared budget: small, so that it is reached within the run
SLACK_BYTES = 24 * MIB
UNKNOWN_SHARE = 10  # one Avro record in 10 has a schema id first asked for while the registry is down
UNKNOWN_SCHEMAS = 20


def later_schema(number: int) -> str:
    return orjson.dumps({"type": "record", "name": f"Later{number}", "fields": [{"name": "x", "type": "int"}]}).decode()


async def count_events(url: str, topic: str, counts: Counter[str], stop_at: float) -> None:
    """One stream, its events counted by type until ``stop_at``."""
    timeout = httpx.Timeout(5.0, read=None)
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout) as client,
        client.stream("GET", f"/sse/{topic}") as body,
    ):
        kind, has_data = "message", False
        async for line in body.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data:"):
                has_data = True
            elif not line:  # the end of a block: an event if it had data (not a heartbeat or an id-only frame)
                if has_data:
                    counts[kind] += 1
                kind, has_data = "message", False
            if time.monotonic() > stop_at:
                return


async def produce(bootstrap: str, schema_topic: str, json_topic: str, values: Sequence[bytes],
                  unknown: Sequence[bytes], down_now: asyncio.Event, rate: int, stop_at: float) -> int:  # fmt: skip
    async def send(producer: AIOKafkaProducer, n: int) -> object:
        late = down_now.is_set() and n % UNKNOWN_SHARE == 0
        await producer.send(
            schema_topic, unknown[n // UNKNOWN_SHARE % len(unknown)] if late else values[n % len(values)]
        )
        return await producer.send(json_topic, orjson.dumps(reading(n)))

    return await paced(bootstrap, rate, stop_at, send)


async def lag(client: httpx.AsyncClient, topic: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families((await client.get("/metrics")).text):
        for sample in family.samples:
            if sample.name == "kafka_sse_bridge_consumer_lag_records" and sample.labels.get("topic") == topic:
                total += sample.value
    return total


async def run(rate: int, up: float, down: float, after: float) -> int:
    kafka, registry = LocalKafka(), LocalRegistry()
    print("starting Kafka and Apicurio Registry…", flush=True)
    await asyncio.gather(asyncio.to_thread(kafka.start), asyncio.to_thread(registry.start))
    suffix = uuid.uuid4().hex[:8]
    schema_topic, json_topic = f"bench-avro-{suffix}", f"bench-json-{suffix}"
    server = None
    try:
        for topic in (schema_topic, json_topic):
            await asyncio.to_thread(create_topic, kafka.bootstrap_servers, topic, PARTITIONS)
        serializers = Serializers(registry.url)
        values = [serializers.avro(AVRO_SCHEMA, schema_topic, reading(n)) for n in range(100)]
        # registered now, each a new id, first asked for by the bridge while the registry is down
        unknown = [serializers.avro(later_schema(n), schema_topic, {"x": n}) for n in range(UNKNOWN_SCHEMAS)]
        serializers.close()
        log = Path(tempfile.mkstemp(prefix="bench-registry-down-", suffix=".log")[1])
        flags = ["--schema-registry-url", registry.url, "--schema-topics", schema_topic,
                 "--ring-total-bytes", str(RING_TOTAL_BYTES)]  # fmt: skip
        port = free_port()
        server = await asyncio.to_thread(start_bridge, kafka.bootstrap_servers, f"bench-*-{suffix}", port, log, flags)
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        stop_at = started + up + down + after
        counts = {topic: Counter[str]() for topic in (schema_topic, json_topic)}
        tasks = [asyncio.create_task(count_events(url, topic, counts[topic], stop_at + 5)) for topic in counts]
        down_now = asyncio.Event()
        producer = asyncio.create_task(
            produce(kafka.bootstrap_servers, schema_topic, json_topic, values, unknown, down_now, rate, stop_at)
        )
        phases = (up, down, after)
        samples = await sample_phases(url, server.pid, started, phases, registry, counts, schema_topic, down_now)
        sent = await producer
        await asyncio.sleep(3)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await asyncio.gather(*tasks)
        return report(samples, rate, sent, counts, schema_topic, json_topic)
    finally:
        if server is not None:
            stop(server.process)
        registry.remove()
        kafka.remove()


Sample = dict[str, float | str]


async def sample_phases(url: str, pid: int, started: float, phases: tuple[float, float, float],
                        registry: LocalRegistry, counts: dict[str, Counter[str]], schema_topic: str,
                        down_now: asyncio.Event) -> list[Sample]:  # fmt: skip
    up, down, after = phases
    samples: list[Sample] = []
    phase = "up"
    restart: asyncio.Task[None] | None = None
    print(f"\n{'s':>5} {'phase':<6} {'RSS MiB':>8} {'json ev':>8} {'avro ev':>8} {'undecod.':>8} {'avro lag':>9}")
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        while (elapsed := time.monotonic() - started) < up + down + after:
            if phase == "up" and elapsed >= up:
                await asyncio.to_thread(registry.stop)
                down_now.set()
                phase = "down"
            elif phase == "down" and elapsed >= up + down:
                restart = asyncio.create_task(asyncio.to_thread(registry.start))  # about 10 s: sampled meanwhile
                phase = "after"
            json_counts, avro_counts = counts[next(t for t in counts if t != schema_topic)], counts[schema_topic]
            sample: Sample = {
                "seconds": round(elapsed, 1), "phase": phase, "rss": rss_bytes(pid),
                "json": sum(json_counts.values()), "avro": sum(avro_counts.values()),
                "undecodable": avro_counts["undecodable"], "lag": await lag(client, schema_topic),
            }  # fmt: skip
            samples.append(sample)
            if len(samples) % 5 == 1:
                print(f"{sample['seconds']:>5} {phase:<6} {float(sample['rss']) / MIB:>8.1f} {sample['json']:>8} "
                      f"{sample['avro']:>8} {sample['undecodable']:>8} {sample['lag']:>9.0f}", flush=True)  # fmt: skip
            await asyncio.sleep(1.0)
    if restart is not None:
        await restart
    return samples


def report(samples: list[Sample], rate: int, sent: int, counts: dict[str, Counter[str]],
           schema_topic: str, json_topic: str) -> int:  # fmt: skip
    def of(phase: str) -> list[Sample]:
        return [sample for sample in samples if sample["phase"] == phase]

    up, down, after = of("up"), of("down"), of("after")
    before = float(up[-1]["rss"])
    peak = max(float(sample["rss"]) for sample in down)
    bound = before + RING_TOTAL_BYTES + SLACK_BYTES
    half = down[len(down) // 2 :]
    minutes = (float(half[-1]["seconds"]) - float(half[0]["seconds"])) / 60 or 1
    slope = (float(half[-1]["rss"]) - float(half[0]["rss"])) / MIB / minutes

    def per_second(key: str, phase: list[Sample]) -> float:
        seconds = float(phase[-1]["seconds"]) - float(phase[0]["seconds"]) or 1
        return (float(phase[-1][key]) - float(phase[0][key])) / seconds

    print(f"\n{sent} records sent to each topic at {rate}/s; received: {json_topic} {dict(counts[json_topic])}, "
          f"{schema_topic} {dict(counts[schema_topic])}")  # fmt: skip
    print(f"RSS at the end of the up phase   {before / MIB:8.1f} MiB")
    print(f"RSS peak while the registry down {peak / MIB:8.1f} MiB  (bound {bound / MIB:.1f} MiB: "
          f"+ ring budget {RING_TOTAL_BYTES / MIB:.0f} + slack {SLACK_BYTES / MIB:.0f})")  # fmt: skip
    print(f"RSS change, second half of down  {slope:+8.2f} MiB/min")
    print(f"RSS at the end                   {float(samples[-1]['rss']) / MIB:8.1f} MiB")
    print(f"JSON events/s: up {per_second('json', up):.0f}, down {per_second('json', down):.0f}, "
          f"after {per_second('json', after):.0f}")  # fmt: skip
    print(f"Avro events/s: up {per_second('avro', up):.0f}, down {per_second('avro', down):.0f}, "
          f"after {per_second('avro', after):.0f}; Avro lag at the end of down {down[-1]['lag']:.0f}, "
          f"at the end {samples[-1]['lag']:.0f}")  # fmt: skip
    within = peak <= bound
    print(f"memory bound {'held' if within else 'EXCEEDED'}")
    return 0 if within else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.registry_down", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=300, help="records a second to each topic (default 300)")
    parser.add_argument("--up-seconds", type=float, default=30.0, help="long enough for the rings to fill")
    parser.add_argument("--down-seconds", type=float, default=60.0)
    parser.add_argument("--after-seconds", type=float, default=20.0)
    arguments = parser.parse_args(argv)
    return asyncio.run(run(arguments.rate, arguments.up_seconds, arguments.down_seconds, arguments.after_seconds))


if __name__ == "__main__":
    sys.exit(main())
