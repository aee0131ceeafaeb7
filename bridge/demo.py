"""The demo producer of ``kafka-sse-bridge dev``: a few small JSON records a second (and Avro ones, with a registry)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import random
import time
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

DEMO_TOPICS = {"demo.sensors": 3, "demo.orders": 1}


async def create_topics(bootstrap_servers: str, partitions: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        for topic, count in partitions.items():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, num_partitions=count, replication_factor=1)])
    finally:
        await admin.close()


async def produce_forever(bootstrap_servers: str, interval: float = 0.25) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, compression_type="lz4")
    await producer.start()
    try:
        for sequence in itertools.count():
            sensor = f"sensor-{sequence % 5}"
            reading = {"seq": sequence, "sensor": sensor, "celsius": round(random.gauss(21, 2), 2), "at": time.time()}
            await producer.send("demo.sensors", orjson.dumps(reading), key=sensor.encode())
            if sequence % 8 == 0:
                order = {"order": sequence // 8, "state": random.choice(["placed", "paid", "shipped"])}
                await producer.send("demo.orders", orjson.dumps(order), headers=[("event-type", b"order")])
            await asyncio.sleep(interval)
    finally:
        await producer.stop()


# `dev --schema-registry` and the compose stack: an Avro topic beside the JSON ones, decoded by the bridge.
AVRO_TOPIC = "demo.payments"
PAYMENT_SCHEMA = {
    "type": "record", "name": "Payment", "namespace": "demo",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "JPY"]}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}  # fmt: skip


async def register_schema(registry_url: str, subject: str, schema: object) -> int:
    """Register ``schema`` (Avro) under ``subject``, waiting for the registry to come up; its id."""
    async with httpx.AsyncClient(base_url=registry_url, timeout=5.0) as client:
        while True:
            try:
                answer = await client.post(
                    f"/subjects/{subject}/versions", json={"schema": orjson.dumps(schema).decode()}
                )
                if answer.status_code == 200:
                    schema_id: int = answer.json()["id"]
                    return schema_id
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1.0)


async def produce_avro_forever(bootstrap_servers: str, registry_url: str, interval: float = 1.0) -> None:
    """Payments in Avro, framed as Confluent's serializer frames them: 0, the schema id, the payload."""
    schema_id = await register_schema(registry_url, f"{AVRO_TOPIC}-value", PAYMENT_SCHEMA)
    parsed = fastavro.parse_schema(PAYMENT_SCHEMA)
    prefix = b"\x00" + schema_id.to_bytes(4, "big")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for sequence in itertools.count():
            payment = {"id": sequence, "amount": Decimal(random.randint(100, 99_999)).scaleb(-2),
                       "currency": random.choice(["EUR", "USD", "JPY"]), "at": datetime.now(UTC),
                       "note": None if sequence % 3 else "first of three"}  # fmt: skip
            payload = io.BytesIO()
            fastavro.schemaless_writer(payload, parsed, payment)
            await producer.send(AVRO_TOPIC, prefix + payload.getvalue())
            await asyncio.sleep(interval)
    finally:
        await producer.stop()
