"""A single-node Apache Kafka broker on loopback, for the local run and the tests.

The broker is the official Apache Kafka (KRaft, combined broker + controller)
started from the jars Maven resolves from Maven Central. The jars are cached
outside the repository, so only the first start downloads anything.

Besides its plaintext listener it can have a SASL_SSL one (TLS, then a PLAIN,
SCRAM-SHA-256 or SCRAM-SHA-512 login), for testing the bridge against a
secured cluster; its SCRAM users are written when the storage is formatted.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

KAFKA_VERSION = "4.3.1"
# What the tests run against: the newest release and the last of the 3.x line, still widely deployed.
KAFKA_VERSIONS = (KAFKA_VERSION, "3.9.1")
# Both lines log through SLF4J; this binding (SLF4J 1.x API, Log4j 2 core) serves 3.9 and 4.x alike.
LOG4J_VERSION = "2.24.3"


def _pom(version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kafka-sse-bridge</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


# Broker logs go to a file in the work directory, warnings and up only.
_LOG4J2 = """status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
"""


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class SaslSslListener:
    """A listener that wants TLS and then a SASL login."""

    key_file: Path  # the broker's private key, unencrypted PKCS#8 PEM
    cert_file: Path  # the broker's certificate chain, PEM
    users: Mapping[str, str]  # name → password, for PLAIN and both SCRAM mechanisms
    client_ca: Path | None = None  # if given, a client certificate is asked for, and must be signed by it

    def properties(self, workdir: Path) -> dict[str, str]:
        keystore = workdir / "broker-keystore.pem"
        keystore.write_text(self.key_file.read_text() + self.cert_file.read_text())
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        return {
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
            **{f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config":
               "org.apache.kafka.common.security.scram.ScramLoginModule required;"
               for mechanism in SASL_MECHANISMS[1:]},
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
            **({"listener.name.sasl_ssl.ssl.client.auth": "requested",
                "listener.name.sasl_ssl.ssl.truststore.type": "PEM",
                "listener.name.sasl_ssl.ssl.truststore.location": str(self.client_ca)} if self.client_ca else {}),
        }  # fmt: skip

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every user for both SCRAM mechanisms."""
        return [part for name, password in self.users.items() for mechanism in SASL_MECHANISMS[1:]
                for part in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]  # fmt: skip


class KafkaStartError(RuntimeError):
    """The local broker could not be fetched, formatted or started."""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "kafka-sse-bridge" / f"kafka-{version}"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the folder of the broker's jars, resolving them with Maven once."""
    libs = cache_dir(version) / "libs"
    done = cache_dir(version) / "libs.complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None:
        raise KafkaStartError("Maven (mvn) is needed to fetch the Kafka jars; install it")
    cache_dir(version).mkdir(parents=True, exist_ok=True)
    pom = cache_dir(version) / "pom.xml"
    pom.write_text(_pom(version))
    command = [
        "mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KafkaStartError(f"mvn could not fetch the Kafka jars:\n{result.stdout}{result.stderr}")
    done.touch()
    return libs


def end_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, and SIGKILL if it has not ended ``timeout`` seconds later."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """A broker must not outlive the run that started it, even one killed hard."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# The quick (C1) JIT only: half the start-up CPU, for a tool that runs a second and the demo broker.
_QUICK_JIT = ("-XX:TieredStopAtLevel=1",)


def _cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` prints it (16 random bytes in
    URL-safe base64, not starting with "-"), without starting a JVM for it."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cluster_id


@dataclass(frozen=True)
class Quorum:
    """The KRaft controller quorum of a cluster whose every node is broker and controller."""

    controller_ports: Mapping[int, int]  # node id → its controller listener's port
    cluster_id: str = field(default_factory=_cluster_id)

    @property
    def voters(self) -> str:
        return ",".join(f"{node}@127.0.0.1:{port}" for node, port in self.controller_ports.items())

    @property
    def replication(self) -> int:
        return len(self.controller_ports)


class LocalKafka:
    """One broker process. ``start`` formats its storage the first time only, so
    ``stop`` (or ``kill``) followed by ``start`` is a broker restart that keeps
    its data and its ports. Alone, it is a cluster of one; with a ``quorum`` it
    is one node of a cluster (localcluster.py)."""

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        sasl_ssl: SaslSslListener | None = None,
        advertised_port: int | None = None,
        version: str = KAFKA_VERSION,
        node_id: int = 1,
        quorum: Quorum | None = None,
        heap: str = "768m",
        quick_start: bool = False,
    ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kafka-sse-bridge-kafka-"))
        self.port = port or free_port()
        # Clients are told to connect here: another port than the broker's own puts something in between (a proxy).
        self.advertised_port = advertised_port or self.port
        self.version = version
        self.node_id = node_id
        self.quorum = quorum or Quorum({node_id: free_port()})
        self.controller_port = self.quorum.controller_ports[node_id]
        self.sasl_ssl = sasl_ssl
        # The quick JIT only: ready in about two thirds of the time on 2 cores, and
        # plenty for a demo's few records a second; the tests and benchmarks want the full JIT.
        self.jvm_options = (f"-Xmx{heap}", "-XX:+UseSerialGC", *(_QUICK_JIT if quick_start else ()))
        self.sasl_ssl_port = free_port() if sasl_ssl else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        assert self.sasl_ssl_port is not None, "started without a SASL_SSL listener"
        return f"127.0.0.1:{self.sasl_ssl_port}"

    def _java(self, libs: Path, *args: str, jvm_options: tuple[str, ...] = ()) -> list[str]:
        own_files = [  # everything the JVM writes goes to the workdir, removed with it; no /tmp/hsperfdata_*
            f"-Dkafka.logs.dir={self.workdir}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Djava.io.tmpdir={self.workdir}",  # where lz4 and snappy unpack their native libraries
            "-XX:-UsePerfData",
        ]
        return ["java", *jvm_options, *own_files, "-cp", f"{libs}/*", *args]

    def _configure(self, libs: Path) -> Path:
        properties = self.workdir / "server.properties"
        if properties.exists():
            return properties
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        secured = f",SASL_SSL://127.0.0.1:{self.sasl_ssl_port}" if self.sasl_ssl else ""
        replication = str(self.quorum.replication)
        min_isr = str(self.quorum.replication // 2 + 1)  # a majority: 1 of 1, 2 of 3
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum.voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}{secured}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.advertised_port}{secured}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(8 * 1024 * 1024),
            **(self.sasl_ssl.properties(self.workdir) if self.sasl_ssl else {}),
        }
        properties.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        formatted = subprocess.run(
            self._java(libs, "kafka.tools.StorageTool", "format", "-t", self.quorum.cluster_id, "-c", str(properties),
                       *(self.sasl_ssl.scram_arguments() if self.sasl_ssl else []), jvm_options=_QUICK_JIT),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if formatted.returncode != 0:
            raise KafkaStartError(f"formatting Kafka storage failed:\n{formatted.stdout}{formatted.stderr}")
        return properties

    def format(self) -> None:
        """Write the configuration and format the storage (once); ``launch`` does it if not done."""
        self._configure(ensure_jars(self.version))

    def launch(self) -> None:
        """Start the broker process without waiting for it. The broker dies with
        the thread that calls this (PR_SET_PDEATHSIG): call it from one that lasts."""
        libs = ensure_jars(self.version)
        properties = self._configure(libs)
        with open(self.workdir / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(properties), jvm_options=self.jvm_options),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        self.launch()
        asyncio.run(self.wait_ready(timeout))

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for a real metadata answer that names this broker, not only an open port."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise KafkaStartError(f"Kafka exited with {self.process.returncode}; see {self.workdir}/broker.log")
            if not _port_open(self.advertised_port):
                await asyncio.sleep(0.2)
                continue
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                named = any(broker["node_id"] == self.node_id for broker in cluster.get("brokers", ()))
                if named and cluster.get("controller_id", -1) >= 0:
                    return
            except Exception as error:  # the broker is still coming up
                last_error = error
            finally:
                await admin.close()
            await asyncio.sleep(0.3)
        self.kill()
        raise KafkaStartError(f"Kafka did not become ready in {timeout:.0f} s: {last_error}")

    @contextmanager
    def running(self) -> Iterator[LocalKafka]:
        """Started for the ``with`` block, then removed (stopped, its data deleted)."""
        self.start()
        try:
            yield self
        finally:
            self.remove()

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            end_process(self.process, timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would; ``start`` brings the same broker back."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
