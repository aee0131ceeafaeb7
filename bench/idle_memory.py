"""What an idle stream costs in memory: RSS per connection, and which code's objects it is.

``python -m bench.idle_memory [--connections N] [--baseline-source DIR]``
starts a local broker and a topic, then for each tree (the baseline's code
first, if given, then this one) a server process runs the real app as
``serve`` does (uvicorn, the bridge's protocol, the app and its middleware)
on loopback. N raw connections each open ``/sse/{topic}`` and stay idle
(nothing is produced, and the report comes before the first heartbeat). Two
passes per tree, each a fresh server: RSS (the server's RSS with the streams
less before them, over N), and tracemalloc started just before the streams,
its snapshot with them open grouped by the package whose code allocated
(innermost frame). Prints the figures and, with a baseline, the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.processes import create_topic, rss_bytes
from bridge.kafka.local import LocalKafka, free_port

CONNECTIONS = 3_000
READY_SECONDS = 60.0
OPEN_SECONDS = 120.0
SETTLE_SECONDS = 2.0
ROOT = Path(__file__).resolve().parent.parent


def _group(filename: str) -> str:
    """The package a file belongs to: site-packages' top folder, ``bridge``, or the stdlib module."""
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if "bridge" in parts:
        return "bridge"
    if "asyncio" in parts:
        return "asyncio"
    return Path(filename).stem


def serve(bootstrap_servers: str, topic: str, port: int, trace: bool) -> None:
    """The server process: serves until stdin closes; ``mark`` and ``report`` lines on stdin measure."""
    import uvloop  # the server's own imports: the tree on PYTHONPATH decides which bridge

    from bridge.config import Settings
    from bridge.server import build_server, tune_gc

    settings = Settings(bootstrap_servers=[bootstrap_servers], topics=[topic], port=port, host="127.0.0.1",
                        max_connections=100_000, max_connections_per_ip=100_000, log_level="warning")  # fmt: skip
    server = build_server(settings)
    tune_gc()

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        before = 0
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            gc.collect()
            if line == "mark":
                before = rss_bytes(os.getpid())
                if trace:
                    tracemalloc.start()
                print("marked", flush=True)
            elif line == "report":
                report: dict[str, Any] = {"rss": rss_bytes(os.getpid()) - before}
                if trace:
                    groups: Counter[str] = Counter()
                    for stat in tracemalloc.take_snapshot().statistics("filename"):
                        groups[_group(stat.traceback[0].filename)] += stat.size
                    report["traced"] = dict(groups.most_common())
                print(json.dumps(report), flush=True)
        server.should_exit = True
        await serving

    uvloop.run(main())


def _open_streams(port: int, topic: str, count: int) -> list[socket.socket]:
    request = f"GET /sse/{topic} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    deadline = time.monotonic() + READY_SECONDS
    while True:  # the first stream: until the bridge has reached Kafka and serves the topic
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                probe.sendall(request)
                if probe.recv(4096).startswith(b"HTTP/1.1 200"):
                    break
        except ConnectionRefusedError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the bridge did not serve the topic")
        time.sleep(0.2)
    streams = []
    for _ in range(count):
        stream = socket.create_connection(("127.0.0.1", port), timeout=OPEN_SECONDS)
        stream.sendall(request)
        streams.append(stream)
    for stream in streams:
        seen = b""
        while b"kafka-sse-bridge" not in seen:  # the preamble: the stream is open
            chunk = stream.recv(4096)
            if not chunk:
                raise ConnectionError("a stream closed before its preamble")
            seen += chunk
    return streams


def measure(tree: Path, bootstrap_servers: str, topic: str, count: int, trace: bool) -> dict[str, Any]:
    """One fresh server of ``tree``'s bridge with ``count`` idle streams."""
    port = free_port()
    command = [sys.executable, "-m", "bench.idle_memory", "--serve", bootstrap_servers, topic, str(port)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT)])}
    with subprocess.Popen([*command, *(["--trace"] if trace else [])], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env=environment, cwd=tree) as server:  # fmt: skip
        assert server.stdin is not None
        assert server.stdout is not None
        streams: list[socket.socket] = []
        try:
            _open_streams(port, topic, 1)[0].close()  # warm: the first stream's one-time costs are not counted
            time.sleep(SETTLE_SECONDS)
            server.stdin.write("mark\n")
            server.stdin.flush()
            server.stdout.readline()
            streams = _open_streams(port, topic, count)
            time.sleep(SETTLE_SECONDS)
            server.stdin.write("report\n")
            server.stdin.flush()
            report: dict[str, Any] = json.loads(server.stdout.readline())
        finally:
            for stream in streams:
                stream.close()
            server.stdin.close()
            server.wait(30)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--baseline-source", type=Path, help="a folder holding the baseline's bridge/ package")
    parser.add_argument("--serve", nargs=3, metavar=("BOOTSTRAP", "TOPIC", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.serve:
        bootstrap_servers, topic, port = arguments.serve
        serve(bootstrap_servers, topic, int(port), arguments.trace)
        return 0
    count = arguments.connections
    trees = [("baseline", arguments.baseline_source.resolve())] if arguments.baseline_source else []
    trees.append(("this tree", ROOT))
    with LocalKafka().running() as kafka:
        topic = "idle"
        create_topic(kafka.bootstrap_servers, topic, 3)
        results = {}
        for name, tree in trees:
            rss = measure(tree, kafka.bootstrap_servers, topic, count, trace=False)["rss"]
            traced = measure(tree, kafka.bootstrap_servers, topic, count, trace=True)["traced"]
            results[name] = (rss, traced)
            per = {group: size / count / 1024 for group, size in traced.items() if size / count >= 16}
            print(f"{name} ({tree}): {count} idle streams, RSS {rss / count / 1024:.2f} KiB per stream, "
                  f"Python objects {sum(traced.values()) / count / 1024:.2f} KiB:", flush=True)  # fmt: skip
            for group, kib in per.items():
                print(f"  {group:24} {kib:6.2f} KiB")
    if len(results) == 2:
        (base_rss, base_traced), (rss, traced) = results.values()
        objects = sum(traced.values()) / sum(base_traced.values())
        print(f"RSS per stream: {rss / count / 1024:.2f} KiB against {base_rss / count / 1024:.2f} "
              f"({rss / base_rss:.2f}x); Python objects {objects:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
