"""``python -m bench``: every scenario against the bridge and the naive baseline, in one run.

Starts a real Kafka broker (bridge.kafka.local), builds the Go load client
(bench/loadclient), then for each scenario starts a fresh server under test
as its own process (the bridge through its console script with its default
settings, or the naive baseline, bench/naive.py), runs the load and stops it.
Prints a table, writes bench/results/bench.json and bench/results/fanout.png.
Every process dies with the benchmark, Ctrl-C and failures included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import catchup, connections, fanout, latency, report, responses, topics
from bench.processes import BENCH, TOPIC_PARTITIONS, Context, build_load_client, create_topic
from bridge.kafka.local import KAFKA_VERSION, LocalKafka

RESULTS = BENCH / "results"
SCENARIOS = ("fanout", "latency", "connections", "catchup", "responses", "topics")
SERVERS = ("bridge", "bridge-2w", "naive")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--value-bytes", type=int, default=100, help="bytes per record value (default 100)")
    parser.add_argument("--catchup-records", type=int, default=1_000_000, help="records behind (default 1000000)")
    parser.add_argument("--rates", default=",".join(map(str, fanout.RATES)),
                        help="fan-out steps, records/s, comma-separated (default %(default)s)")  # fmt: skip
    parser.add_argument("--latency-rates", default=",".join(map(str, latency.RATES)),
                        help="latency steps, records/s, comma-separated (default %(default)s)")  # fmt: skip
    parser.add_argument("--latency-subscribers", default=",".join(map(str, latency.SUBSCRIBERS)),
                        help="latency steps, subscribers, comma-separated (default %(default)s)")  # fmt: skip
    parser.add_argument(
        "--baseline-source",
        type=Path,
        help="fan-out, latency and connections: also run the bridge package of this folder (e.g. main's), step by step",
    )
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"of the fan-out and connections scenarios, a subset of {SERVERS}")  # fmt: skip
    parser.add_argument("--topics-rate", type=int, default=topics.RATE,
                        help="records/s over the 200 topics of the topics scenario (default %(default)s)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    arguments = parser.parse_args(argv)
    arguments.scenarios = [name for name in arguments.scenarios.split(",") if name]
    arguments.rates = [int(rate) for rate in arguments.rates.split(",") if rate]
    arguments.latency_rates = [int(rate) for rate in arguments.latency_rates.split(",") if rate]
    arguments.latency_subscribers = [int(count) for count in arguments.latency_subscribers.split(",") if count]
    arguments.servers = [name for name in arguments.servers.split(",") if name]
    if unknown := set(arguments.servers) - set(SERVERS):
        parser.error(f"unknown servers {sorted(unknown)}")
    if unknown := set(arguments.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    return arguments


def bridge_code() -> str:
    """The commit measured, and whether bridge/ had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=BENCH.parent)
        return done.stdout.strip() if done.returncode == 0 else "?"

    dirty = git("status", "--porcelain", "--", "bridge")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in bridge/" if dirty else "")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the clean-up below runs
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="kafka-sse-bench-"))
    kafka = LocalKafka()
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "processor": report.cpu_model(), "load_average_at_start": os.getloadavg()},
        "versions": {name: version(name) for name in ("aiokafka", "uvicorn", "uvloop", "httptools", "starlette")}
        | {"kafka": KAFKA_VERSION},
        "bridge_code": bridge_code(),
        "value_bytes": arguments.value_bytes,
    }  # fmt: skip
    completed = False
    try:
        print("building the load client, starting Kafka ...", flush=True)
        client = build_load_client(workdir)
        kafka.start()
        assert kafka.process is not None
        context = Context(client, kafka.bootstrap_servers, kafka.process.pid, workdir, arguments.value_bytes)
        if "fanout" in arguments.scenarios:
            print("(a) fan-out", flush=True)
            runs = [(name, None) for name in arguments.servers]
            if arguments.baseline_source is not None:  # the same bridge of the baseline's code, first
                runs.insert(0, ("bridge", arguments.baseline_source))
            results["fanout"] = [
                asdict(step)
                for name, source in runs
                for step in fanout.run(context, name, _topic(context, "fanout", name), arguments.rates, source)
            ]
        if "latency" in arguments.scenarios:
            counts = ", ".join(f"{count:,}" for count in arguments.latency_subscribers)
            print(f"latency: what the bridge adds to the producer pipeline's own, {counts} subscribers", flush=True)
            topic = _topic(context, "latency", "bridge")
            results["latency"] = [
                asdict(step)
                for step in latency.run(
                    context, topic, arguments.latency_rates, arguments.baseline_source, arguments.latency_subscribers
                )
            ]
        if "connections" in arguments.scenarios:
            print("(b, c) idle connections and a reconnect storm", flush=True)
            runs = [(name, None) for name in arguments.servers if name != "bridge-2w"]
            if arguments.baseline_source is not None:  # the same bridge of the baseline's code, first
                runs.insert(0, ("bridge", arguments.baseline_source))
            results["connections"] = [asdict(connections.run(context, name, _topic(context, "conn", name), source))
                                      for name, source in runs]  # fmt: skip
        if "catchup" in arguments.scenarios:
            print("(d) catch-up", flush=True)
            results["catchup"] = catchup.run(context, arguments.catchup_records)
        if "responses" in arguments.scenarios:
            print("the streaming response alone: bridge, sse-starlette, FastAPI", flush=True)
            results["responses"] = responses.run()
        if "topics" in arguments.scenarios:
            print("(e) topics: 200 served, 5 watched, against reading every served topic", flush=True)
            results["topics"] = topics.run(context, arguments.topics_rate)
        completed = True
    finally:
        kafka.remove()
        results["load_average_at_end"] = os.getloadavg()
        results["seconds"] = round(time.monotonic() - started)
        arguments.output.mkdir(parents=True, exist_ok=True)
        (arguments.output / "bench.json").write_text(json.dumps(results, indent=1) + "\n")
        if completed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nthe run did not complete; logs kept in {workdir}", file=sys.stderr)
    print()
    report.print_tables(results)
    if "fanout" in results:
        report.chart(results, arguments.output / "fanout.png")
    print(f"\nresults: {arguments.output / 'bench.json'}, chart: {arguments.output / 'fanout.png'}")
    return 0


def _topic(context: Context, scenario: str, server: str) -> str:
    """A fresh topic per scenario and server, so neither sees the other's records."""
    topic = f"bench-{scenario}-{server}-{uuid.uuid4().hex[:6]}"
    create_topic(context.bootstrap_servers, topic, TOPIC_PARTITIONS)
    return topic


if __name__ == "__main__":
    sys.exit(main())
