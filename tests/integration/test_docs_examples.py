"""The documentation's examples run: every ```` ```console example ```` block
of README.md and docs/*.md (tests/support/docexamples.py says how they are
read) against a real broker with the demo topics, the demo producer and a
bridge serving them, as ``scripts/dev`` gives a reader."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import demo
from bridge.kafka.local import LocalKafka, free_port
from tests.support import docexamples
from tests.support.bridgeproc import BridgeProcess

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = docexamples.examples(DOCS, ROOT)
PRODUCER = "import asyncio, sys; from bridge import demo; asyncio.run(demo.produce_forever(sys.argv[1]))"


@pytest.fixture(scope="module")
def demo_bridge(newest_kafka: LocalKafka) -> Iterator[BridgeProcess]:
    """What ``scripts/dev`` runs: the demo topics, their producer and a bridge serving them."""
    asyncio.run(demo.create_topics(newest_kafka.bootstrap_servers, demo.DEMO_TOPICS))
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, newest_kafka.bootstrap_servers])
    bridge = BridgeProcess(newest_kafka.bootstrap_servers, {"topics": "demo.*"})
    try:
        asyncio.run(bridge.start())
        for topic, partitions in demo.DEMO_TOPICS.items():
            asyncio.run(bridge.wait_for_topic(topic, partitions))
        yield bridge
    finally:
        if bridge.process is not None:
            bridge.stop()
        producer.terminate()
        producer.wait(10)


def test_the_docs_have_examples_where_the_reader_needs_them() -> None:
    where = {example.where.split(":")[0] for example in EXAMPLES}
    assert {"README.md", "docs/security.md", "docs/operators.md"} <= where
    commands = " ".join(command.text for example in EXAMPLES for command in example.commands)
    for shown in ("curl -N", "kafka-sse-bridge serve", "kafka-sse-bridge token"):
        assert shown in commands


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.where for example in EXAMPLES])
def test_the_example_does_what_the_docs_say(
    example: docexamples.Example, demo_bridge: BridgeProcess, kafka: LocalKafka, tmp_path: Path
) -> None:
    port = free_port() if example.starts_a_bridge else demo_bridge.port
    problem = docexamples.run(example, port=port, brokers=kafka.bootstrap_servers, workdir=tmp_path)
    assert problem is None, f"{example.where}: {problem}"
