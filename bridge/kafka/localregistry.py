"""A Schema Registry on loopback, for the local run and the tests: Apicurio Registry.

Apicurio's all-in-one application (a Quarkus app) from Maven Central,
unpacked once into the same cache as the Kafka jars (local.py), its schemas
in an H2 database file of its work directory. It serves the
Confluent-compatible API at ``/apis/ccompat/v7``.
It needs Java 21 or later: the one on PATH if it is, else the newest under
/usr/lib/jvm.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bridge.kafka.local import _die_with_parent, cache_dir, end_process, free_port

APICURIO_VERSION = "3.3.3"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
MIN_JAVA = 21
CCOMPAT = "/apis/ccompat/v7"


class RegistryStartError(RuntimeError):
    """The local registry could not be fetched or started; the message is one line."""


def registry_dir() -> Path:
    return cache_dir().parent / f"apicurio-registry-{APICURIO_VERSION}"


def ensure_registry() -> Path:
    """The folder holding quarkus-run.jar, fetched with Maven and unpacked once."""
    folder = registry_dir()
    if (folder / "quarkus-run.jar").exists():
        return folder
    if shutil.which("mvn") is None:
        raise RegistryStartError("Maven (mvn) is needed to fetch Apicurio Registry; install it")
    with tempfile.TemporaryDirectory(prefix="apicurio-") as work:
        # -Dtransitive=false: the artifact is self-contained, and its pom names repositories not reachable here
        command = ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={work}",
                   "-Dtransitive=false"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=work)
        archives = list(Path(work).glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise RegistryStartError(f"mvn could not fetch {ARTIFACT}:\n{result.stdout}{result.stderr}")
        unpacking = folder.with_name(folder.name + ".partial")
        shutil.rmtree(unpacking, ignore_errors=True)
        with tarfile.open(archives[0]) as archive:
            archive.extractall(unpacking, filter="data")
        unpacking.rename(folder)  # whole or not at all: a broken download is not taken for a good one
    return folder


def _java_version(java: Path) -> int:
    release = java.parent.parent / "release"
    if release.is_file():
        found = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.MULTILINE)
        if found:
            return int(found.group(1))
    return 0


def find_java() -> Path:
    """A java of version MIN_JAVA or later: JAVA_HOME's, PATH's, or the newest under /usr/lib/jvm."""
    candidates = [Path(os.environ["JAVA_HOME"]) / "bin" / "java"] if os.environ.get("JAVA_HOME") else []
    if (on_path := shutil.which("java")) is not None:
        candidates.append(Path(on_path).resolve())
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), key=_java_version, reverse=True)
    for java in candidates:
        if java.is_file() and _java_version(java) >= MIN_JAVA:
            return java
    raise RegistryStartError(f"Apicurio Registry needs Java {MIN_JAVA} or later; none found (JAVA_HOME, PATH, "
                             "/usr/lib/jvm)")  # fmt: skip


class LocalRegistry:
    """One Apicurio process; ``stop`` then ``start`` is a restart on the same port that keeps its schemas."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kafka-sse-bridge-registry-"))
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL, what ``--schema-registry-url`` takes."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT}"

    def start(self, timeout: float = 90.0) -> None:
        folder = ensure_registry()
        java = find_java()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # C1 only (TieredStopAtLevel=1): a start in about 10 s instead of 30 here; a test registry
        # serves a few hundred requests, which the optimising compiler would not pay back
        with open(self.workdir / "registry.log", "ab") as out:
            self.process = subprocess.Popen(
                [str(java), "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dquarkus.http.host=127.0.0.1",
                 f"-Dquarkus.http.port={self.port}",
                 # Quarkus' management interface (health, metrics) would listen on 0.0.0.0:9000: off loopback,
                 # and one registry per machine (whether it is on is fixed when Apicurio is built)
                 "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={free_port()}",
                 # schemas in a file of the work directory, so that a restart keeps them (the default is memory)
                 f"-Dapicurio.datasource.url=jdbc:h2:file:{self.workdir / 'schemas'}",
                 "-jar", str(folder / "quarkus-run.jar")],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RegistryStartError(f"Apicurio exited with {self.process.returncode}; see {self.workdir}")
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RegistryStartError(f"Apicurio did not answer in {timeout:.0f} s; see {self.workdir}/registry.log")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            end_process(self.process, timeout)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
