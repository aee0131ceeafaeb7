"""Run inside a network namespace of its own (``unshare --net``): a real
stream of the bridge (uvicorn, the bridge's protocol and listening socket,
``EventStream`` on a channel) and a client that vanishes without a FIN.

After the client has its stream, every packet on the namespace's loopback is
dropped (a ``pfifo`` queue of length 0): the client acknowledges nothing
more, as a machine switched off would. Prints, as JSON, how many seconds
after that the stream ended, or null if it did not within ``--wait``.

    unshare --net python -m tests.support.vanish --unacked 2 --heartbeat 0.5 --wait 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time

import uvicorn
import uvloop
from starlette.types import Receive, Scope, Send

from bridge.config import Settings
from bridge.fanout.hub import Hub
from bridge.fanout.outbox import CloseReason
from bridge.fanout.views import Subscription
from bridge.http.protocol import BoundedHttpToolsProtocol, listening_socket
from bridge.http.stream import EventStream
from bridge.kafka.catchup import CatchUps


async def main(unacked: float, heartbeat: float, wait: float) -> float | None:
    settings = Settings()
    hub = Hub(ring_records=10, ring_bytes=10_000, ring_total_bytes=1 << 30, type_header=None)
    channel = hub.open_channel("t", [0])
    catchups = CatchUps(settings, {})  # never used: the stream starts live

    view = hub.view(Subscription.of(["t"]))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            stream = EventStream(view, None, catchups, outbox_bytes=65536, heartbeat=heartbeat, retry_ms=1000,
                                 stalled_client_seconds=settings.stalled_client_seconds)  # fmt: skip
            await stream(scope, receive, send)

    sock = listening_socket("127.0.0.1", 0, unacked_seconds=unacked)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, loop="uvloop", http=BoundedHttpToolsProtocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve([sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /sse/t HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"kafka-sse-bridge")
    dropping = await asyncio.create_subprocess_exec("tc", "qdisc", "add", "dev", "lo", "root", "pfifo", "limit", "0")
    assert await dropping.wait() == 0
    vanished = time.monotonic()
    detected = None
    while time.monotonic() - vanished < wait:
        if channel.stats.streams_closed[CloseReason.CLIENT_LEFT]:
            detected = time.monotonic() - vanished
            break
        await asyncio.sleep(0.05)
    writer.transport.abort()
    server.should_exit = True
    server.force_exit = True
    await serving
    return detected


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--unacked", type=float, required=True, help="TCP_USER_TIMEOUT in seconds; 0: the kernel's")
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--wait", type=float, default=15)
    arguments = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # a new namespace's loopback starts down
    print(json.dumps({"detected_after": uvloop.run(main(arguments.unacked, arguments.heartbeat, arguments.wait))}))
