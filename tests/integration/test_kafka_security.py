"""The bridge reading a broker that wants TLS and a SASL login (PLAIN,
SCRAM-SHA-256/512): records stream; a wrong password, an untrusted
certificate either way or one that does not name the host keeps it unready
with a clear log line, never a crash loop and never the password in its output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bridge.kafka.local import LocalKafka, SaslSslListener
from tests.support.bridgeproc import BridgeProcess, open_stream
from tests.support.brokers import Brokers
from tests.support.cluster import Cluster, unique_topic
from tests.support.tlscerts import Certificates, make_certificates

pytestmark = pytest.mark.kafka

USER, PASSWORD = "bridge", "pw-for-the-bridge-7f3a"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secured_brokers(certificates: Certificates) -> Iterator[Brokers]:
    """Brokers of their own, for these tests only: a plaintext listener for the
    test's own clients, and a SASL_SSL one for the bridge, where a client
    certificate is optional but must be signed by the test CA if sent."""
    listener = SaslSslListener(certificates.broker_key, certificates.broker_cert, {USER: PASSWORD},
                               client_ca=certificates.ca)  # fmt: skip
    brokers = Brokers(lambda version: LocalKafka(sasl_ssl=listener, version=version))
    yield brokers
    brokers.remove()


@pytest.fixture
def secured_kafka(secured_brokers: Brokers, kafka_version: str) -> LocalKafka:
    return secured_brokers.get(kafka_version)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "kafka-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
async def secured_bridges(secured_kafka: LocalKafka) -> AsyncIterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    for bridge in started:
        bridge.stop()


def secured_bridge(kafka: LocalKafka, started: list[BridgeProcess], **flags: str) -> BridgeProcess:
    bridge = BridgeProcess(kafka.sasl_ssl_bootstrap_servers, {"kafka-security-protocol": "SASL_SSL", **flags})
    started.append(bridge)
    return bridge


@pytest.mark.both_kafka_versions
@pytest.mark.parametrize(
    ("mechanism", "client_certificate"),
    [("SCRAM-SHA-512", False), ("SCRAM-SHA-256", False), ("PLAIN", True)],
)
async def test_records_stream_over_sasl_ssl(
    secured_kafka: LocalKafka,
    secured_bridges: list[BridgeProcess],
    certificates: Certificates,
    password_file: Path,
    mechanism: str,
    client_certificate: bool,
) -> None:
    topic = await Cluster(secured_kafka.bootstrap_servers).create_topic(unique_topic(), partitions=2)
    certificate_flags = (
        {"kafka-ssl-certfile": str(certificates.client_cert), "kafka-ssl-keyfile": str(certificates.client_key)}
        if client_certificate
        else {}
    )
    bridge = secured_bridge(
        secured_kafka, secured_bridges, **{"kafka-sasl-mechanism": mechanism, "kafka-sasl-username": USER,
        "kafka-sasl-password-file": str(password_file), "kafka-ssl-cafile": str(certificates.ca)}, **certificate_flags
    )  # fmt: skip
    await bridge.start()
    await bridge.wait_for_topic(topic, 2)
    async with open_stream(bridge.url, topic) as stream:
        sent = await Cluster(secured_kafka.bootstrap_servers).produce(topic, [b"a", b"b", b"c", b"d"], partitions=2)
        events = await stream.events(4)
    assert sorted(event.data for event in events) == ["a", "b", "c", "d"]
    assert len(sent) == 4
    assert PASSWORD not in bridge.log()


async def wait_for_log(bridge: BridgeProcess, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := bridge.log()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never logged:\n{log}")
        await asyncio.sleep(0.2)
    return log


async def assert_unready_and_alive(bridge: BridgeProcess) -> None:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["kafka_reachable"] is False
        assert (await client.get("/healthz")).status_code == 200
    assert bridge.process is not None
    assert bridge.process.poll() is None


async def test_a_wrong_password_keeps_the_bridge_unready_and_says_why(
    secured_kafka: LocalKafka, secured_bridges: list[BridgeProcess], certificates: Certificates, tmp_path: Path
) -> None:
    wrong = "not-the-password-91c2"
    (tmp_path / "wrong").write_text(wrong)
    bridge = secured_bridge(
        secured_kafka, secured_bridges, **{"kafka-sasl-mechanism": "SCRAM-SHA-512", "kafka-sasl-username": USER,
        "kafka-sasl-password-file": str(tmp_path / "wrong"), "kafka-ssl-cafile": str(certificates.ca)}
    )  # fmt: skip
    await bridge.start(until="/healthz")
    await wait_for_log(bridge, "next try in 2 s")  # the second failure: it retries, ever more slowly
    await assert_unready_and_alive(bridge)
    log = bridge.log()
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in log
    assert "not reachable yet over SASL_SSL as 'bridge' (SCRAM-SHA-512)" in log
    assert wrong not in log
    assert "Traceback" not in log


@pytest.mark.parametrize("untrusted", ["broker", "client"])
async def test_an_untrusted_certificate_either_way_is_refused(
    secured_kafka: LocalKafka,
    secured_bridges: list[BridgeProcess],
    certificates: Certificates,
    password_file: Path,
    untrusted: str,
) -> None:
    tls = (
        {"kafka-ssl-cafile": str(certificates.stranger_ca)}  # the broker's certificate is not signed by it
        if untrusted == "broker"
        else {"kafka-ssl-cafile": str(certificates.ca), "kafka-ssl-certfile": str(certificates.stranger_cert),
              "kafka-ssl-keyfile": str(certificates.stranger_key)}  # the broker does not trust this one
    )  # fmt: skip
    bridge = secured_bridge(
        secured_kafka, secured_bridges, **{"kafka-sasl-mechanism": "PLAIN", "kafka-sasl-username": USER,
        "kafka-sasl-password-file": str(password_file)}, **tls
    )  # fmt: skip
    await bridge.start(until="/healthz")
    log = await wait_for_log(bridge, "not reachable yet over SASL_SSL")
    # the client refuses the broker's certificate; the broker closes on the client's
    closed = f"Connection at {secured_kafka.sasl_ssl_bootstrap_servers} closed"
    assert ("CERTIFICATE_VERIFY_FAILED" if untrusted == "broker" else closed) in log
    await assert_unready_and_alive(bridge)
    assert PASSWORD not in bridge.log()


async def test_the_broker_certificate_must_name_the_host_unless_told_otherwise(
    secured_kafka: LocalKafka, secured_bridges: list[BridgeProcess], certificates: Certificates, password_file: Path
) -> None:
    # The broker's certificate names 127.0.0.1 only; this bridge dials it as localhost.
    flags = {"bootstrap-servers": f"localhost:{secured_kafka.sasl_ssl_port}", "kafka-sasl-mechanism": "SCRAM-SHA-256",
             "kafka-sasl-username": USER, "kafka-sasl-password-file": str(password_file),
             "kafka-ssl-cafile": str(certificates.ca)}  # fmt: skip
    checking = secured_bridge(secured_kafka, secured_bridges, **flags)
    await checking.start(until="/healthz")
    assert "Hostname mismatch" in await wait_for_log(checking, "not reachable yet over SASL_SSL")
    await assert_unready_and_alive(checking)

    trusting = secured_bridge(secured_kafka, secured_bridges, **flags, **{"kafka-ssl-check-hostname": "false"})
    await trusting.start()  # ready
