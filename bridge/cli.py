"""The ``kafka-sse-bridge`` command line.

``serve`` has one flag per setting, made from the settings' own fields so the
two cannot drift; a flag given overrides the environment and the config file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from bridge import demo, server
from bridge.config import ENV_PREFIX, ConfigError, Settings, load_settings
from bridge.localkafka import KafkaStartError, LocalKafka

PROG = "kafka-sse-bridge"


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"{field.description} (env {ENV_PREFIX}{name.upper()}, default {field.default!r})",
        )
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML file of settings, e.g. config/bridge.toml (env {ENV_PREFIX}CONFIG)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Serve Kafka topics to browsers as Server-Sent Events.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the bridge", description="Run the bridge.")
    _add_setting_flags(serve)
    dev = commands.add_parser(
        "dev",
        help="run a local Kafka broker, a demo producer and the bridge",
        description="Start a local Kafka broker (jars fetched with Maven once), create demo topics, produce demo "
        "records and serve them; prints the URL of the page to watch.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000)")
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _serve(arguments: dict[str, Any]) -> int:
    config_file = arguments.pop("config", None) or os.environ.get(f"{ENV_PREFIX}CONFIG")
    settings = load_settings(arguments, Path(config_file) if config_file else None)
    _configure_logging(settings.log_level)
    server.serve(settings)
    return 0


def _dev(host: str, port: int) -> int:
    _configure_logging("info")
    kafka = LocalKafka()
    print(f"{PROG} dev: starting Kafka (the first run fetches its jars with Maven)…", flush=True)
    kafka.start()
    try:
        settings = load_settings(
            {
                "bootstrap_servers": kafka.bootstrap_servers,
                "topics": "demo.*",
                "host": host,
                "port": port,
                "metadata_interval": 1.0,
            }
        )
        uvloop.run(_run_dev(settings, kafka.bootstrap_servers))
    finally:
        kafka.remove()
    return 0


async def _run_dev(settings: Settings, bootstrap_servers: str) -> None:
    await demo.create_topics(bootstrap_servers, demo.DEMO_TOPICS)
    bridge = server.build_server(settings)
    producer = asyncio.create_task(demo.produce_forever(bootstrap_servers))
    serving = asyncio.create_task(bridge.serve())
    while not bridge.started and not serving.done():  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.1)
    if bridge.started:
        print(f"\n{PROG} dev: open http://{settings.host}:{settings.port}/ to watch demo.sensors and demo.orders live"
              f"\n  (Kafka at {bootstrap_servers}; Ctrl-C stops everything)\n", flush=True)  # fmt: skip
    try:
        await serving
    finally:
        producer.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = vars(_parser().parse_args(argv))
    command = arguments.pop("command")
    try:
        if command == "serve":
            return _serve(arguments)
        return _dev(**arguments)
    except (ConfigError, KafkaStartError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
