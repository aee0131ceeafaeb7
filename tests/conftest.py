from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from bridge.kafka.local import KAFKA_VERSION, KAFKA_VERSIONS, LocalKafka
from bridge.kafka.localregistry import LocalRegistry
from tests.support.bridgeproc import BridgeProcess
from tests.support.brokers import Brokers
from tests.support.chromium import launched_chromium
from tests.support.cluster import Cluster, unique_topic


@pytest.fixture(scope="session", autouse=True)
def session_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What the tests and the processes they start write through ``tempfile`` or
    ``$TMPDIR`` (bridge logs, broker and nginx folders, Chromium's profiles) goes
    into pytest's own folder for this run, which pytest deletes after three more
    runs, not into the machine's /tmp. (The broker's JVM keeps its files in the
    broker's folder: bridge/kafka/local.py.)"""
    folder = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))
        patch.setattr(tempfile, "tempdir", str(folder))
        yield folder


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``both_kafka_versions`` runs once per tested Kafka version
    (``test_x[4.3.1]``, ``test_x[3.9.1]``), each time with that version's
    broker behind ``kafka`` and every fixture built on it."""
    if metafunc.definition.get_closest_marker("both_kafka_versions"):
        metafunc.parametrize("kafka_version", KAFKA_VERSIONS)


@pytest.fixture
def kafka_version() -> str:
    """The Kafka version of the test's broker: the newest, unless the test is marked ``both_kafka_versions``."""
    return KAFKA_VERSION


@pytest.fixture(scope="session")
def session_brokers() -> Iterator[Brokers]:
    brokers = Brokers(lambda version: LocalKafka(version=version))
    yield brokers
    brokers.remove()


@pytest.fixture
def kafka(session_brokers: Brokers, kafka_version: str) -> LocalKafka:
    """The session's broker of the test's Kafka version (a fixture of module or
    session scope takes ``newest_kafka``: the version is chosen per test)."""
    return session_brokers.get(kafka_version)


@pytest.fixture(scope="session")
def newest_kafka(session_brokers: Brokers) -> LocalKafka:
    """The session's broker of the newest Kafka version, the one ``kafka`` is in unmarked tests."""
    return session_brokers.get(KAFKA_VERSION)


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[LocalRegistry]:
    """Apicurio Registry, started the first time a test asks for it (about 10-40 s)."""
    registry = LocalRegistry()
    registry.start()
    yield registry
    registry.remove()


@pytest.fixture
def cluster(kafka: LocalKafka) -> Cluster:
    return Cluster(kafka.bootstrap_servers)


@pytest.fixture
async def topic(cluster: Cluster) -> str:
    """A new three-partition topic, served by any bridge the test starts."""
    return await cluster.create_topic(unique_topic(), partitions=3)


@pytest.fixture
async def start_bridge(kafka: LocalKafka) -> AsyncIterator[Callable[..., Any]]:
    """Start bridge processes with extra flags; every one is stopped after the test."""
    started: list[BridgeProcess] = []

    async def start(**flags: str) -> BridgeProcess:
        bridge = BridgeProcess(
            kafka.bootstrap_servers, {name.replace("_", "-"): value for name, value in flags.items()}
        )
        started.append(bridge)
        await bridge.start()
        return bridge

    yield start
    for bridge in started:
        if bridge.process is not None:
            bridge.stop()


@pytest.fixture
async def bridge(start_bridge: Callable[..., Any], topic: str) -> BridgeProcess:
    """A bridge with default settings that already serves ``topic``."""
    process: BridgeProcess = await start_bridge()
    await process.wait_for_topic(topic, 3)
    return process


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium (browser tests, and the HTTP/2 test behind nginx)."""
    async with launched_chromium() as launched:
        yield launched
