"""Soak: a bounded run with connections churning and records flowing.

Starts a real local broker and the bridge (its own process), then for
``--seconds`` (10 minutes by default):

- a producer writes ``--rate`` records a second to a topic of 3 partitions;
- ``--clients`` clients churn: each opens a stream (half of the time resuming
  with the last id it saw, from the ring or from Kafka), reads for 0.5 to 5 s,
  and leaves, by closing cleanly or by a reset; a few never read and are cut
  as slow;
- every ``--every`` seconds the bridge process is sampled: RSS, open file
  descriptors, threads (from /proc), asyncio tasks and connected streams
  (from /metrics).

It prints the samples as a table, then the change from the first sample after
warm-up to the last: flat RSS and no growth in descriptors or tasks beyond
the connections open at that moment is the pass. Results go to
``bench/results/soak.json``. Not part of the test suite. Run from the
repository root::

    python -m bench.soak [--seconds 600] [--rate 200] [--clients 40] [--every 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench.__main__ import bridge_code
from bench.local import broker_and_bridge, paced

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
WARM_UP_SECONDS = 60
STUCK_SHARE = 0.05  # of connections that never read


class Totals:
    def __init__(self) -> None:
        self.connections = 0
        self.events = 0
        self.refused = 0


async def churn(port: int, topic: str, totals: Totals, stop_at: float, rng: random.Random) -> None:
    """One client, over and over: connect (maybe resuming), read a while, leave."""
    last_id = ""
    while time.monotonic() < stop_at:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        resume = f"Last-Event-ID: {last_id}\r\n" if last_id and rng.random() < 0.5 else ""
        writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n{resume}\r\n".encode())
        totals.connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 200"):
                totals.refused += 1
            elif rng.random() < STUCK_SHARE:
                await asyncio.sleep(rng.uniform(2, 5))  # reads nothing
            else:
                deadline = time.monotonic() + rng.uniform(0.5, 5)
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        chunk = await asyncio.wait_for(reader.read(65536), left)
                    except TimeoutError:
                        break
                    if not chunk:
                        break
                    totals.events += chunk.count(b"\ndata: ") + chunk.startswith(b"data: ")
                    if (at := chunk.rfind(b"\nid: ")) != -1:
                        last_id = chunk[at + 5 : chunk.index(b"\n", at + 1)].decode()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        finally:
            if rng.random() < 0.5:
                writer.transport.abort()  # a reset, as a browser tab killed
            else:
                writer.close()
        await asyncio.sleep(rng.uniform(0, 0.5))


async def produce(bootstrap_servers: str, topic: str, rate: int, stop_at: float) -> None:
    async def send(producer: AIOKafkaProducer, n: int) -> object:
        return await producer.send(topic, orjson.dumps({"n": n, "pad": "s" * 300}))

    await paced(bootstrap_servers, rate, stop_at, send)


def proc_status(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "threads": int(fields["Threads"])}


async def sample(client: httpx.AsyncClient, pid: int, started: float, totals: Totals) -> dict[str, Any]:
    text = (await client.get("/metrics")).text
    values: dict[str, float] = {}
    slow_cut = 0.0
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            values[metric.name] = values.get(metric.name, 0.0) + metric.value
            if metric.name == "kafka_sse_bridge_streams_closed_total" and metric.labels.get("reason") == "slow":
                slow_cut += metric.value
    return {
        "seconds": round(time.monotonic() - started),
        **proc_status(pid),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "tasks": int(values["kafka_sse_bridge_asyncio_tasks"]),
        "streams": int(values["kafka_sse_bridge_subscribers"]),
        "streams_opened": int(values["kafka_sse_bridge_streams_opened_total"]),
        "slow_cut": int(slow_cut),
        "client_connections": totals.connections,
    }


async def run(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    async with broker_and_bridge("soak", ["--outbox-bytes", "262144"]) as setup:
        started = time.monotonic()
        stop_at = started + arguments.seconds
        totals = Totals()
        rng = random.Random(7)
        work = [asyncio.create_task(produce(setup.kafka.bootstrap_servers, setup.topic, arguments.rate, stop_at))]
        work += [asyncio.create_task(churn(setup.port, setup.topic, totals, stop_at, rng))
                 for _ in range(arguments.clients)]  # fmt: skip
        samples = []
        async with httpx.AsyncClient(base_url=setup.url, timeout=10) as client:
            while time.monotonic() < stop_at:
                samples.append(await sample(client, setup.bridge.pid, started, totals))
                print(" ".join(f"{key}={value}" for key, value in samples[-1].items()), flush=True)
                await asyncio.sleep(min(arguments.every, max(0.0, stop_at - time.monotonic())))
            await asyncio.gather(*work)
            await asyncio.sleep(3)  # the last connections closed on the bridge's side too
            samples.append(await sample(client, setup.bridge.pid, started, totals))
        samples[-1]["after_clients_left"] = True
        samples[-1]["events_read_by_clients"] = totals.events
        samples[-1]["refused"] = totals.refused
        print(" ".join(f"{key}={value}" for key, value in samples[-1].items()), flush=True)
        if "Traceback" in await asyncio.to_thread(setup.log.read_text, errors="replace"):
            raise SystemExit(f"the bridge logged a traceback: {setup.log}")
        return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=int, default=200, help="records per second")
    parser.add_argument("--clients", type=int, default=40, help="clients churning at once")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    arguments = parser.parse_args(argv)
    samples = uvloop.run(run(arguments))
    warm = next((s for s in samples if s["seconds"] >= WARM_UP_SECONDS), samples[0])
    during = samples[-2] if len(samples) > 1 else samples[-1]
    change = {key: round(during[key] - warm[key], 1) for key in ("rss_mb", "fds", "tasks", "threads")}
    idle = samples[-1]
    print(f"from {warm['seconds']} s to {during['seconds']} s: " + ", ".join(f"{k} {v:+}" for k, v in change.items()))
    print(f"after every client left: rss {idle['rss_mb']} MB, fds {idle['fds']}, tasks {idle['tasks']}, "
          f"streams {idle['streams']}")  # fmt: skip
    RESULTS.write_text(json.dumps({"code": bridge_code(), "arguments": vars(arguments), "samples": samples,
                                   "change_after_warm_up": change}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
