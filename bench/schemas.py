"""Schema topics: decoding cost per record, and fan-out of a decoded topic, each against a baseline in the same run.

A real Apicurio Registry is started (bridge.kafka.localregistry); confluent-kafka's
serializers register the schemas and write the records, so both sides read
the same bytes. Measured, in turns so that whatever else the machine does
weighs on both alike:

- decode, per record: the bridge's decoder (payload to JSON text, what it
  serves) against confluent-kafka's own deserializer (payload to a dict or a
  message object, no JSON at all), for a 10-field Avro record and a Protobuf
  message of the same fields;
- fan-out: ``SchemaTopics.publish`` of batches of those Avro records (decoded,
  then published) to 1,000 subscribers of one topic, against ``Channel.publish``
  of the same records as plain JSON (what a JSON producer would have sent).

Run from the repository root (needs Java 21+, like the tests)::

    python -m bench.schemas [--records 100] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bridge.config import Settings
from bridge.fanout.hub import Hub
from bridge.fanout.outbox import Subscriber
from bridge.fanout.views import Subscription
from bridge.kafka.decoding import SchemaTopics
from bridge.kafka.localregistry import LocalRegistry
from bridge.kafka.registry import SchemaRegistry
from bridge.wire.decoded import Undecodable
from bridge.wire.registryformat import split
from bridge.wire.schemas import Schema
from tests.support.schemas import Serializers, generated_protos

SUBSCRIBERS = 1000
TOPIC = "bench-avro"
AVRO_SCHEMA = orjson.dumps({
    "type": "record", "name": "Reading", "namespace": "bench",
    "fields": [{"name": "id", "type": "long"}, {"name": "sensor", "type": "string"},
               {"name": "celsius", "type": "double"}, {"name": "ok", "type": "boolean"},
               {"name": "count", "type": "int"}, {"name": "site", "type": "string"},
               {"name": "at", "type": "long"}, {"name": "ratio", "type": "float"},
               {"name": "note", "type": ["null", "string"]}, {"name": "level", "type": "int"}],
}).decode()  # fmt: skip


def reading(n: int) -> dict[str, object]:
    return {"id": n, "sensor": f"sensor-{n % 50}", "celsius": 21.5 + n % 7, "ok": n % 2 == 0, "count": n % 1000,
            "site": "plant-north", "at": 1767225600000 + n, "ratio": 0.25, "note": None if n % 3 else "check",
            "level": n % 4}  # fmt: skip


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


async def schema_of(client: SchemaRegistry, value: bytes) -> Schema:
    framed = split(value)
    assert framed is not None
    schema = (await client.resolve([framed[0]]))[framed[0]]
    assert not isinstance(schema, Undecodable), schema
    return schema


def per_record(decode: Callable[[bytes], object], values: Sequence[bytes]) -> float:
    started = time.perf_counter()
    for value in values:
        decode(value)
    return (time.perf_counter() - started) / len(values) * 1e6


async def run(records: int, rounds: int) -> None:
    registry = LocalRegistry()
    print("starting Apicurio Registry…", flush=True)
    registry.start()
    try:
        serializers = Serializers(registry.url)
        avro_values = [serializers.avro(AVRO_SCHEMA, TOPIC, reading(n)) for n in range(records)]
        shop = generated_protos()
        pings = [shop.Order(id=f"o-{n}", i32=n, i64=n * 1000, flag=n % 2 == 0, ratio=0.25, amount=21.5,
                            status=1, tags=["a"], u64=n, s64=-n) for n in range(records)]  # fmt: skip
        proto_values = [serializers.protobuf(message, "bench-proto") for message in pings]
        settings = Settings(schema_registry_url=registry.url, schema_topics=[TOPIC])
        client = SchemaRegistry(settings)
        client.start()
        avro_schema, proto_schema = [await schema_of(client, values[0]) for values in (avro_values, proto_values)]
        value_context = SerializationContext(TOPIC, MessageField.VALUE)
        theirs_avro = AvroDeserializer(serializers.client)
        theirs_proto = ProtobufDeserializer(shop.Order, {"use.deprecated.format": False})
        decoders: dict[str, Callable[[bytes], object]] = {
            "avro: confluent AvroDeserializer (dict)": lambda v: theirs_avro(v, value_context),
            "avro: bridge (JSON text)": lambda v: avro_schema.decode(memoryview(v)[5:]),
            "protobuf: confluent ProtobufDeserializer (message)": lambda v: theirs_proto(v, value_context),
            "protobuf: bridge (JSON text)": lambda v: proto_schema.decode(memoryview(v)[5:]),
        }
        spent: dict[str, list[float]] = {name: [] for name in decoders}
        for _ in range(rounds):
            for name, decode in decoders.items():
                spent[name].append(per_record(decode, avro_values if name.startswith("avro") else proto_values))
        print(f"\ndecode, {records} records per round, {rounds} rounds, median µs/record")
        medians = {name: statistics.median(times) for name, times in spent.items()}
        for name, micros in medians.items():
            print(f"  {name:<52} {micros:8.2f}")
        for kind, theirs in (("avro", "confluent AvroDeserializer (dict)"),
                             ("protobuf", "confluent ProtobufDeserializer (message)")):  # fmt: skip
            ratio = medians[f"{kind}: {theirs}"] / medians[f"{kind}: bridge (JSON text)"]
            print(f"  {kind}: bridge throughput / confluent's = {ratio:.2f}x")
        await fan_out(client, settings, avro_values, rounds)
        await client.stop()
        serializers.close()
    finally:
        registry.remove()


async def fan_out(client: SchemaRegistry, settings: Settings, avro_values: Sequence[bytes], rounds: int) -> None:
    plain_json = [orjson.dumps(reading(n)) for n in range(len(avro_values))]  # the same readings, as JSON
    hub = Hub(ring_records=10_000, ring_bytes=1 << 30, ring_total_bytes=1 << 30, type_header=None)
    decoded_topics = SchemaTopics(settings, client)
    channels = {name: hub.open_channel(name, (0,)) for name in (TOPIC, "bench-json")}
    subscribers = []
    for name in channels:
        view = hub.view(Subscription.of([name]))
        for _ in range(SUBSCRIBERS):
            subscriber = Subscriber(1 << 40)
            view.subscribe(subscriber, None)
            subscribers.append(subscriber)
    spent: dict[str, list[float]] = {"avro, decoded then published": [], "plain JSON, published": []}
    for number in range(rounds):
        base = number * len(avro_values)
        avro_batch = [Record(0, base + n, None, value) for n, value in enumerate(avro_values)]
        json_batch = [Record(0, base + n, None, value) for n, value in enumerate(plain_json)]
        started = time.perf_counter()
        decoded_topics.publish(channels[TOPIC], avro_batch)
        spent["avro, decoded then published"].append(time.perf_counter() - started)
        started = time.perf_counter()
        channels["bench-json"].publish(json_batch)
        spent["plain JSON, published"].append(time.perf_counter() - started)
        for subscriber in subscribers:  # empty the outboxes, untimed
            await subscriber.take(0)
    assert not decoded_topics.waiting, "the schema was cached: no batch may have waited"
    print(f"\nfan-out to {SUBSCRIBERS} subscribers, batches of {len(avro_values)} records, {rounds} rounds")
    medians = {name: statistics.median(times) * 1e6 for name, times in spent.items()}
    for name, micros in medians.items():
        print(f"  {name:<40} {micros:10.0f} µs/batch {micros / len(avro_values):8.2f} µs/record")
    ratio = medians["plain JSON, published"] / medians["avro, decoded then published"]
    print(f"  avro throughput / plain JSON's = {ratio:.2f}x")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.schemas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100, help="records per batch and per round (default 100)")
    parser.add_argument("--rounds", type=int, default=200, help="rounds (default 200)")
    arguments = parser.parse_args(argv)
    asyncio.run(run(arguments.records, arguments.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
