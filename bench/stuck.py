"""Fast clients' latency while a hundred stuck clients are attached, with and without bursts.

A stuck client asks for a stream and never reads: its TCP window fills, the
bridge's writes to it stop, it falls behind the live path and, having taken
nothing for ``--stalled-client-seconds``, is cut. This script measures what
that costs everyone else, against a baseline taken in the same run:

1. starts a real local broker and the bridge (``kafka-sse-bridge serve``, its
   own process, ``--outbox-bytes 262144 --stalled-client-seconds 2``);
2. a producer writes records at a steady rate, each carrying the time it was
   sent; ``--fast`` clients read the stream over raw sockets and note each
   record's latency (produced → parsed by the client);
3. baseline phase: the fast clients alone; stuck phase: the same, with
   ``--stuck`` stuck clients attached the whole time (each one cut is
   replaced at once, so the bridge keeps cutting as it would in production);
   burst phase: the stuck phase plus ``--burst`` records produced at once every
   ``--burst-every`` seconds (fast clients may fall behind and be caught up in
   place: they must still get every record, none cut);
4. prints, per phase, the fast clients' latency (p50, p99, max), the records
   each received (all of them, or the run failed), the stuck clients cut, and
   the bridge's RSS; the stuck phase's latency as a ratio to the baseline.

Results go to ``bench/results/stuck.json``. Run from the repository root::

    python -m bench.stuck [--seconds 20] [--rate 400] [--value-bytes 2000] [--stuck 100] [--fast 5]
                          [--burst 5000] [--burst-every 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop
from aiokafka import AIOKafkaProducer

from bench.__main__ import bridge_code
from bench.local import Setup, broker_and_bridge, peak_rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "stuck.json"
OUTBOX_BYTES = 256 * 1024
STALLED_SECONDS = 2  # stuck clients are cut (and replaced) every few seconds, as the bridge would in production
SLOW_CLOSED = "kafka_sse_bridge_streams_closed_total"
SENT_PREFIX = b'data: {"sent":'


class FastClient:
    """Reads one stream and notes each record's latency (the value holds its send time, ns)."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.received = 0
        self.recording = False
        self.cut = False  # the bridge ended this stream: the client itself was too slow (a busy machine)

    async def run(self, port: int, topic: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        pending = b""
        try:
            while chunk := await reader.read(262144):
                now = time.time_ns()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.startswith(SENT_PREFIX):
                        self.received += 1
                        if self.recording:  # the send time without parsing the whole value
                            sent = int(line[len(SENT_PREFIX) : line.index(b",", len(SENT_PREFIX))])
                            self.latencies_ms.append((now - sent) / 1e6)
            self.cut = True
        finally:
            writer.close()


class StuckClients:
    """Keeps ``count`` streams open that never read; each one the bridge cuts is replaced."""

    def __init__(self, port: int, topic: str, count: int) -> None:
        self.port, self.topic, self.count = port, topic, count
        self.sockets: list[socket.socket] = []
        self.cut = 0

    async def open(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", self.port))
            await loop.sock_sendall(sock, f"GET /sse/{self.topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            self.sockets.append(sock)

    async def keep(self, url: str) -> None:
        await self.open(self.count)
        async with httpx.AsyncClient(base_url=url) as client:
            while True:
                await asyncio.sleep(0.5)
                text = (await client.get("/metrics")).text
                cut = int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith(SLOW_CLOSED) and 'reason="slow"' in line))  # fmt: skip
                if cut > self.cut:
                    await self.open(cut - self.cut)
                    self.cut = cut

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


async def produce(bootstrap_servers: str, topic: str, rate: int, seconds: float, value_bytes: int,
                  burst: int = 0, burst_every: float = 5.0) -> int:  # fmt: skip
    """``rate`` records a second for ``seconds``, and ``burst`` more at once every ``burst_every`` seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5)
    await producer.start()
    pad = "p" * value_bytes
    sent = bursts = 0
    try:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            if burst and elapsed >= (bursts + 1) * burst_every:
                bursts += 1
            due = int(elapsed * rate) + 1 + bursts * burst
            for _ in range(due - sent):
                await producer.send(topic, orjson.dumps({"sent": time.time_ns(), "pad": pad}))
            sent = due
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def percentiles(latencies: Sequence[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def phase(name: str, setup: Setup, arguments: argparse.Namespace) -> dict[str, Any]:
    port, topic = setup.port, setup.topic
    fast = [FastClient() for _ in range(arguments.fast)]
    readers = [asyncio.create_task(client.run(port, topic)) for client in fast]
    stuck = StuckClients(port, topic, arguments.stuck if name != "baseline" else 0)
    keeper = asyncio.create_task(stuck.keep(f"http://127.0.0.1:{port}"))
    await asyncio.sleep(1.0)  # every stream open, the stuck ones full
    before = [client.received for client in fast]
    for client in fast:
        client.recording = True
    burst = arguments.burst if name == "burst" else 0
    sent = await produce(setup.kafka.bootstrap_servers, topic, arguments.rate, arguments.seconds, arguments.value_bytes,
                         burst, arguments.burst_every)  # fmt: skip
    deadline = time.monotonic() + 30
    # a count, not an event, to wait for: polled, bounded
    while any(c.received - b < sent for c, b in zip(fast, before, strict=True)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    keeper.cancel()
    for task in readers:
        task.cancel()
    await asyncio.gather(keeper, *readers, return_exceptions=True)
    stuck.close()
    received = [client.received - b for client, b in zip(fast, before, strict=True)]
    if any(count != sent for count in received):
        cut = sum(client.cut for client in fast)
        raise SystemExit(f"{name}: fast clients received {received} of {sent} records ({cut} were cut)")
    latencies = [latency for client in fast for latency in client.latencies_ms]
    peak_rss = peak_rss_mb(setup.bridge.pid)
    return {"phase": name, "records": sent, "burst_records": burst, "fast_clients": arguments.fast,
            "stuck_attached": stuck.count,
            "stuck_cut": stuck.cut, **percentiles(latencies), "bridge_peak_rss_mb": peak_rss}  # fmt: skip


async def run(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    flags = ["--outbox-bytes", str(OUTBOX_BYTES), "--max-connections-per-ip", "100000",
             "--stalled-client-seconds", str(STALLED_SECONDS)]  # fmt: skip
    async with broker_and_bridge("stuck", flags) as setup:
        return [await phase(name, setup, arguments) for name in ("baseline", "stuck", "burst")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="producing time per phase")
    parser.add_argument("--rate", type=int, default=400, help="records per second")
    parser.add_argument("--value-bytes", type=int, default=2000)
    parser.add_argument("--stuck", type=int, default=100)
    parser.add_argument("--fast", type=int, default=5)
    parser.add_argument("--burst", type=int, default=5000, help="records produced at once in the burst phase")
    parser.add_argument("--burst-every", type=float, default=5.0, help="seconds between bursts")
    arguments = parser.parse_args(argv)
    phases = uvloop.run(run(arguments))
    baseline = phases[0]
    ratio = {row["phase"]: {key: round(row[key] / baseline[key], 2) for key in ("p50_ms", "p99_ms")}
             for row in phases[1:]}  # fmt: skip
    print(f"{'phase':<9} {'records':>7} {'stuck cut':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'peak RSS MB':>11}")
    for row in phases:
        print(f"{row['phase']:<9} {row['records']:>7} {row['stuck_cut']:>9} {row['p50_ms']:>8} {row['p99_ms']:>8} "
              f"{row['max_ms']:>8} {row['bridge_peak_rss_mb']:>11}")  # fmt: skip
    for name, ratios in ratio.items():
        print(f"{name} / baseline: p50 x{ratios['p50_ms']}, p99 x{ratios['p99_ms']}")
    RESULTS.write_text(json.dumps({"code": bridge_code(), "arguments": vars(arguments), "phases": phases,
                                   "ratio_to_baseline": ratio}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
