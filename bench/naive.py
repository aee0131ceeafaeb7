"""The naive design, as the benchmark's baseline: what the bridge is measured against.

One asyncio.Queue per client, one consumer loop that awaits ``put()`` on
every queue for every record, and a StreamingResponse whose generator yields
one event per record, formatted per client. Same Kafka reading (aiokafka,
manual assignment from the live end, the bridge's fetch settings) and the same
server (uvicorn, uvloop, httptools), so the difference measured is the
fan-out design. Each event carries the same cursor id as the bridge's, so the
load client can count lost and duplicated records; there is no resume
(Last-Event-ID is ignored: a reconnecting client starts at the live end).

    python -m bench.naive --bootstrap-servers HOST:PORT --topic TOPIC --partitions N --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bridge.kafka.source import FETCH_MAX_WAIT_MS

Item = tuple[str, bytes]  # (event id, record value)


def create_app(bootstrap_servers: str, topic: str, partition_count: int) -> Starlette:
    queues: set[asyncio.Queue[Item]] = set()
    assigned = asyncio.Event()

    async def consume() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS)  # fmt: skip
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(partition_count)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            position = [ends[tp] for tp in partitions]
            for tp in partitions:
                consumer.seek(tp, ends[tp])
            assigned.set()
            async for record in consumer:
                position[record.partition] = record.offset + 1
                item = (".".join(map(str, position)), record.value or b"")
                for queue in tuple(queues):
                    await queue.put(item)
        finally:
            await consumer.stop()

    async def events(queue: asyncio.Queue[Item]) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            while True:
                id, value = await queue.get()
                yield f"id: {id}\ndata: {value.decode()}\n\n".encode()
        finally:
            queues.discard(queue)

    async def stream(request: Request) -> StreamingResponse:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        queues.add(queue)
        return StreamingResponse(events(queue), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def ready(request: Request) -> Response:
        return Response(status_code=200 if assigned.is_set() else 503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        consumer = asyncio.create_task(consume())
        consumer.add_done_callback(lambda task: task.cancelled() or task.result())  # a failure shows in the log
        yield
        consumer.cancel()

    return Starlette(routes=[Route(f"/sse/{topic}", stream), Route("/readyz", ready)], lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args(argv)
    app = create_app(arguments.bootstrap_servers, arguments.topic, arguments.partitions)
    uvicorn.run(app, host="127.0.0.1", port=arguments.port, loop="uvloop", http="httptools", log_level="warning")


if __name__ == "__main__":
    main()
