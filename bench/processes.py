"""The benchmark's processes: the servers under test, the load client and the
producer, each a process of its own that dies with the benchmark, and what
/proc says about them (CPU seconds, memory, the rest of the machine's load).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.kafka.local import end_process, free_port

BENCH = Path(__file__).resolve().parent
READY_SECONDS = 60.0
TOPIC_PARTITIONS = 3  # of every benchmark topic
# The bridges under test by name: their flags beyond where to listen and read.
# Past the 10,000 streams of the connections scenario (a storm's reconnects may
# arrive before the server has seen the old streams close), and per address.
LOAD_LIMITS = ("--max-connections", "100000", "--max-connections-per-ip", "100000")
BRIDGES: dict[str, tuple[str, ...]] = {"bridge": (), "bridge-2w": ("--workers", "2")}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """The benchmark could not set up or run a scenario."""


def _child_setup() -> None:
    """In every child: die with the benchmark (even one killed hard) and have
    every file descriptor the hard limit allows (10,000 connections)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(command: Sequence[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    """``options["source"]``: a folder whose ``bridge`` package runs instead of this tree's."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if (source := options.pop("source", None)) is not None:
        env["PYTHONPATH"] = str(source)  # ahead of the editable install, whose finder comes last
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=options.pop("stdout", out), stderr=out, preexec_fn=_child_setup,
                                env=env, **options)  # fmt: skip


def stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    end_process(process, timeout)


def build_load_client(workdir: Path) -> Path:
    binary = workdir / "loadclient"
    done = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=BENCH / "loadclient", capture_output=True,
                          text=True, check=False, timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"go build of bench/loadclient failed:\n{done.stderr}")
    return binary


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    """A server under test: the bridge (``kafka-sse-bridge serve``) or the naive baseline."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, topic: str) -> None:
        """Until /readyz is 200 and ``topic`` (or a topic the pattern matches) is served."""
        deadline = time.monotonic() + READY_SECONDS
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200 and self._serves(client, topic):
                        return
                time.sleep(0.1)
        raise BenchError(f"{self.name} did not serve {topic} within {READY_SECONDS:.0f} s:\n{self.log_tail()}")

    def _serves(self, client: httpx.Client, topic: str) -> bool:
        if self.name not in BRIDGES:
            return True
        return any(fnmatchcase(entry["topic"], topic) for entry in client.get("/topics").json()["topics"])

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def start_bridge(bootstrap_servers: str, topic: str, port: int, log: Path, extra: Sequence[str] = (),
                 name: str = "bridge", source: Path | None = None) -> Server:  # fmt: skip
    """As users run it: the console script with the default settings, apart from where it listens and reads
    and its connection limits: the load client's thousands of "browsers" come from 8 loopback addresses."""
    command = ["kafka-sse-bridge", "serve", "--bootstrap-servers", bootstrap_servers, "--topics", topic,
               "--port", str(port), *LOAD_LIMITS, *extra]  # fmt: skip
    server = Server("bridge", spawn(command, log, source=source), port, log)
    server.wait_ready(topic)
    return server


def start_naive(bootstrap_servers: str, topic: str, partitions: int, port: int, log: Path) -> Server:
    command = [sys.executable, "-m", "bench.naive", "--bootstrap-servers", bootstrap_servers, "--topic", topic,
               "--partitions", str(partitions), "--port", str(port)]  # fmt: skip
    server = Server("naive", spawn(command, log, cwd=BENCH.parent), port, log)
    server.wait_ready(topic)
    return server


# ---------------------------------------------------------------- /proc


def family(pid: int) -> list[int]:
    """A process and its children: a bridge with --workers is a parent and its workers."""
    found = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (all their threads)."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children."""
    total = 0
    for member in family(pid):
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE_BYTES
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all processors spent not idle since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class CpuMeter:
    """CPU shares of watched processes over a window, and of everything else on the machine."""

    def __init__(self, watched: dict[str, int]) -> None:
        self.watched = watched
        self.start()

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self.watched.items()}
        self._busy = machine_busy_seconds()
        self._wall = time.monotonic()

    def percent(self) -> dict[str, float]:
        """Percent of one core per watched process, and ``others``: the rest of the machine."""
        wall = time.monotonic() - self._wall
        used = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.watched.items()}
        others = max(0.0, machine_busy_seconds() - self._busy - sum(used.values()))
        return {name: round(100 * seconds / wall, 1) for name, seconds in {**used, "others": others}.items()}


# ---------------------------------------------------------------- load client and producer


@dataclass
class LoadClient:
    """``loadclient stream``: its JSON reports, read by a thread as they come."""

    process: subprocess.Popen[bytes]
    reports: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, binary: Path, server: Server, topic: str, log: Path, *args: str) -> LoadClient:
        command = [str(binary), "stream", "-addr", f"127.0.0.1:{server.port}", "-path", f"/sse/{topic}", *args]
        client = cls(spawn(command, log, stdout=subprocess.PIPE))
        threading.Thread(target=client._read, daemon=True).start()
        return client

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.append(json.loads(line))

    @property
    def last(self) -> dict[str, Any]:
        return self.reports[-1] if self.reports else {}

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reports and condition(self.reports[-1]):
                return self.reports[-1]
            if self.process.poll() is not None and not self.reports:
                raise BenchError(f"the load client exited with {self.process.returncode}")
            time.sleep(0.05)
        raise BenchError(f"{what}: not within {timeout:.0f} s; last report {self.last}")

    def noted(self, note: str, timeout: float) -> dict[str, Any]:
        """The first report with ``note`` (the client writes one when it starts a storm)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for report in self.reports:
                if report.get("note") == note:
                    return report
            time.sleep(0.05)
        raise BenchError(f"the load client wrote no {note!r} report within {timeout:.0f} s")

    def storm(self) -> None:
        self.process.send_signal(signal.SIGUSR1)

    def finish(self, timeout: float = 15.0) -> dict[str, Any]:
        stop(self.process, timeout)
        time.sleep(0.1)  # the reader thread takes the last line
        return self.last

    def between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [report for report in self.reports if start <= report["time"] <= end]


@contextlib.contextmanager
def producing(binary: Path, bootstrap_servers: str, topic: str, rate: float, seconds: float, value_bytes: int,
              log: Path) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """``loadclient produce | kcat -P``: records at ``rate`` a second for ``seconds``, each with its send time.
    kcat sends within 1 ms (linger.ms=1) so the producer adds little to the latency measured."""
    pacer = spawn([str(binary), "produce", "-rate", str(rate), "-seconds", str(seconds), "-bytes", str(value_bytes)],
                  log, stdout=subprocess.PIPE)  # fmt: skip
    kcat = spawn(["kcat", "-P", "-b", bootstrap_servers, "-t", topic, "-X", "linger.ms=1", "-z", "lz4"], log,
                 stdin=pacer.stdout)  # fmt: skip
    assert pacer.stdout is not None
    pacer.stdout.close()  # kcat holds the pipe now
    try:
        yield kcat
        pacer.wait(seconds + 30)
        kcat.wait(30)
        if pacer.returncode or kcat.returncode:
            raise BenchError(f"producer exited with {pacer.returncode}, kcat with {kcat.returncode}; see {log}")
    finally:
        stop(pacer)
        stop(kcat)


# ---------------------------------------------------------------- topics


def create_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create())


def end_offsets(bootstrap_servers: str, topic: str, partitions: int) -> list[int]:
    async def ends() -> list[int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            offsets = await consumer.end_offsets(tps)
            return [int(offsets[tp]) for tp in tps]
        finally:
            await consumer.stop()

    return asyncio.run(ends())


@dataclass(frozen=True)
class Context:
    """What every scenario needs: the built load client, the broker, a work folder."""

    client: Path
    bootstrap_servers: str
    broker_pid: int
    workdir: Path
    value_bytes: int

    def start_server(self, name: str, topic: str, source: Path | None = None) -> Server:
        """``source``: a bridge's code from that folder (bench --baseline-source), not this tree's."""
        port = free_port()
        log = self.workdir / f"{name}-{topic}-{port}.log"
        if name in BRIDGES:
            return start_bridge(self.bootstrap_servers, topic, port, log, BRIDGES[name], name, source)
        return start_naive(self.bootstrap_servers, topic, TOPIC_PARTITIONS, port, log)
