"""The ``kafka-sse-bridge`` command line.

``serve`` has one flag per setting, made from the settings' own fields so the
two cannot drift; a flag given overrides the environment and the config file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
import uvloop

from bridge import demo, server
from bridge.config import ENV_PREFIX, ConfigError, Settings, load_settings
from bridge.http import auth
from bridge.kafka.local import KafkaStartError, LocalKafka

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
    token = commands.add_parser(
        "token",
        help="mint an HS256 token for trying out token auth",
        description="Print an HS256 token signed with the secret a bridge verifies with (--jwt-secret-file). "
        "For trying things out: in production, tokens come from your identity provider.",
    )
    token.add_argument("--secret-file", type=Path, required=True, help="the secret, as given to --jwt-secret-file")
    token.add_argument("--topics", required=True, help="topics (names or glob patterns) it grants, TOPIC[,TOPIC]")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token.add_argument("--audience", help="its aud claim")
    token.add_argument("--issuer", help="its iss claim")
    token.add_argument("--topics-claim", default="topics", help="claim holding the topics (default topics)")
    return parser


def _serve(arguments: dict[str, Any]) -> int:
    config_file = arguments.pop("config", None) or os.environ.get(f"{ENV_PREFIX}CONFIG")
    settings = load_settings(arguments, Path(config_file) if config_file else None)
    server.configure_logging(settings.log_level)
    return server.serve(settings)


def _dev(host: str, port: int) -> int:
    server.configure_logging("info")
    kafka = LocalKafka(quick_start=True)
    print(f"{PROG} dev: starting Kafka (the first run fetches its jars with Maven)…", flush=True)
    kafka.start()
    print(f"{PROG} dev: Kafka ready; creating the demo topics and starting the bridge…", flush=True)
    try:
        settings = load_settings(
            {
                "bootstrap_servers": kafka.bootstrap_servers,
                "topics": "demo.*",
                "page_topics": list(demo.DEMO_TOPICS),
                "host": host,
                "port": port,
                "metadata_interval": 1.0,
            }
        )
        uvloop.run(_run_dev(settings, kafka.bootstrap_servers))
    finally:
        kafka.remove()
    return 0


def _token(secret_file: Path, topics: str, ttl: int, audience: str | None, issuer: str | None,
           topics_claim: str) -> int:  # fmt: skip
    secret = auth.read_secret(str(secret_file))
    claims: dict[str, Any] = {topics_claim: [topic.strip() for topic in topics.split(",") if topic.strip()],
                              "exp": int(time.time()) + ttl}  # fmt: skip
    claims.update({name: value for name, value in (("aud", audience), ("iss", issuer)) if value})
    print(jwt.encode(claims, secret, algorithm="HS256"))
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
        if command == "token":
            return _token(**arguments)
        return _dev(**arguments)
    except (ConfigError, KafkaStartError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
