"""The demo producer of ``kafka-sse-bridge dev``: a few small JSON records a second."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time

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
