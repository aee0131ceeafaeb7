"""Catch-up throughput: how fast a client that resumes far behind is served from Kafka itself.

A client whose ``Last-Event-ID`` is older than the bridge's ring gets a reader
of its own (bridge/catchup.py) that reads Kafka from the client's cursor up to
the live position. This script measures that path end to end, against a
baseline taken in the same run on the same data:

1. starts a real local broker (``bridge.localkafka.LocalKafka``), creates a
   topic of 3 partitions and fills it with ``kcat`` (lz4, one ``kcat`` per
   partition), then checks the end offsets equal what was sent;
2. baseline: a plain aiokafka consumer (no group, uvloop, like the bridge) in a
   process of its own reads every record: the ceiling of a Python Kafka reader;
3. starts the bridge as users do (``kafka-sse-bridge serve``, its own process,
   ``--ring-records 1000``) after the topic is full, so it serves the topic
   from its live end and its ring holds none of it;
4. one client, in a process of its own, sends ``GET /sse/TOPIC`` with
   ``Last-Event-ID: 0.0.0`` (from the beginning) over a raw asyncio socket,
   counts events until it has one per record and checks the last event id is
   the end offsets joined by dots, which proves nothing is missing at the end;
5. the same with several clients at once (``--clients``, the bridge's default
   ``--max-catchups`` is 4), all in one client process: aggregate events/s.

Every scenario reports events/s (from connecting to the last record), its
ratio to the baseline, the CPU share of the client process
(``time.process_time`` over wall time) and of the bridge and broker processes
(from /proc). Two more columns: the slowest answer to ``GET /healthz`` sent
every 0.1 s during a bridge scenario (how long the bridge's event loop kept
every other connection waiting), and the CPU the rest of the machine used
meanwhile (anything else running skews the figures; run on a quiet machine).
Results, with per-stream details (time to first event, last id) and the
bridge's peak memory, go to ``bench/results/catchup.json``.

With ``--profile FILE`` one more single-client run is sampled with py-spy
(``pip install py-spy``) and the bridge's hottest functions are printed; that
run is reported apart, since sampling slows the bridge down.

Run from the repository root::

    python -m bench.catchup [--records 1000000] [--value-bytes 100] [--clients 4] [--timeout 300]
                            [--profile /tmp/catchup-profile.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import http.client
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.localkafka import KAFKA_VERSION, LocalKafka, free_port

PARTITIONS = 3
RING_RECORDS = 1000
START_ID = "0.0.0"  # from the beginning: older than anything the ring holds
RESULTS = Path(__file__).resolve().parent / "results" / "catchup.json"
READY_SECONDS = 60.0
PRODUCE_SECONDS = 300.0
PROFILE_RATE = 250  # py-spy samples per second
PROBE_INTERVAL = 0.1  # seconds between two GET /healthz of the liveness probe
MAX_PROBES = 20_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Job = TypeVar("Job")
Report = TypeVar("Report")


class BenchError(RuntimeError):
    """The benchmark could not set up or run a scenario."""


# ---------------------------------------------------------------- the client


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding, incrementally: bytes in, payload pieces out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # payload bytes still to come in the current chunk
        self._crlf_due = False  # a chunk's payload ended; its CRLF comes next
        self.ended = False  # the last (empty) chunk arrived

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        pieces: list[bytes] = []
        pos, size = 0, len(buffer)
        while pos < size and not self.ended:
            if self._remaining:
                take = min(self._remaining, size - pos)
                pieces.append(buffer[pos : pos + take])
                pos += take
                self._remaining -= take
                self._crlf_due = not self._remaining
            elif self._crlf_due:
                if size - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise ValueError("a chunk is not followed by CRLF")
                pos += 2
                self._crlf_due = False
            else:
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if size - pos > 1024:
                        raise ValueError("chunk size line too long")
                    break
                self._remaining = int(buffer[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                self.ended = not self._remaining
        self._buffer = buffer[pos:]
        return pieces


class SseCounter(asyncio.Protocol):
    """One ``GET /sse/...``: counts complete events until ``target``.

    An event is a frame (ended by a blank line) that starts with ``id: ``; the
    bridge writes the id line first. Frames that start with ``event: `` and
    have no id are the bridge's notices (``gap``, ``reset``) and are counted
    apart. Only complete frames are looked at: ``_pending`` holds the start of
    the frame not yet ended, so it always begins at a frame boundary.
    """

    def __init__(self, request: bytes, target: int) -> None:
        self.request = request
        self.target = target
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.started = self.ended = 0.0
        self.first_event: float | None = None
        self.events = 0
        self.notices = 0
        self.body_bytes = 0
        self.last_id = b""
        self.error: str | None = None
        self._head = b""
        self._in_body = False
        self._chunks = ChunkedDecoder()
        self._pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.finished.done():
            return
        if not self._in_body:
            data = self._read_head(data)
            if not self._in_body:
                return
        try:
            for piece in self._chunks.feed(data):
                self._count(piece)
        except ValueError as error:
            self.finish(f"bad chunked body: {error}")
            return
        if self.events >= self.target:
            self.finish(None)
        elif self._chunks.ended:
            self.finish("the bridge ended the stream")

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(f"connection lost: {exc or 'closed by the bridge'}")

    def finish(self, error: str | None) -> None:
        if self.finished.done():
            return
        self.ended = time.perf_counter()
        self.error = error
        self.finished.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def _read_head(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 64 * 1024:
                self.finish("response head too long")
            return b""
        head, rest = self._head[:end].decode("latin-1"), self._head[end + 4 :]
        status_line, *lines = head.split("\r\n")
        headers = {
            name.strip().lower(): value.strip().lower() for name, _, value in (ln.partition(":") for ln in lines)
        }
        if status_line.split(" ")[1:2] != ["200"]:
            self.finish(f"{status_line}: {rest[:300]!r}")
        elif not headers.get("content-type", "").startswith("text/event-stream"):
            self.finish(f"not an event stream: {headers.get('content-type')!r}")
        elif headers.get("transfer-encoding") != "chunked":
            self.finish(f"expected a chunked body, got headers {headers}")
        else:
            self._in_body = True
        self._head = b""
        return rest

    def _count(self, piece: bytes) -> None:
        self.body_bytes += len(piece)
        buffer = self._pending + piece if self._pending else piece
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self._pending = buffer
            return
        end = cut + 2  # buffer[:end] is whole frames, the first starting at 0
        starts_with_id = buffer.startswith(b"id: ")
        events = buffer.count(b"\n\nid: ", 0, end) + starts_with_id
        self.notices += buffer.count(b"\n\nevent: ", 0, end) + buffer.startswith(b"event: ")
        if events:
            last = buffer.rfind(b"\n\nid: ", 0, end)
            start = last + 6 if last >= 0 else 4
            self.last_id = buffer[start : buffer.index(b"\n", start)]
            if self.first_event is None:
                self.first_event = time.perf_counter()
            self.events += events
        self._pending = buffer[end:]


@dataclass(frozen=True)
class ClientJob:
    port: int
    topic: str
    clients: int
    target: int  # events per client
    timeout: float


@dataclass(frozen=True)
class StreamResult:
    events: int
    notices: int
    last_id: str
    seconds: float  # request written -> target reached (or given up)
    first_event_seconds: float | None
    body_bytes: int
    error: str | None


@dataclass(frozen=True)
class ClientReport:
    streams: list[StreamResult]
    wall_seconds: float
    cpu_seconds: float


def run_clients(job: ClientJob) -> ClientReport:
    """In a process of its own: ``job.clients`` streams at once, on one uvloop."""
    cpu, wall = time.process_time(), time.perf_counter()
    streams = uvloop.run(_stream_all(job))
    return ClientReport(streams, time.perf_counter() - wall, time.process_time() - cpu)


async def _stream_all(job: ClientJob) -> list[StreamResult]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /sse/{job.topic} HTTP/1.1\r\nHost: 127.0.0.1:{job.port}\r\nAccept: text/event-stream\r\n"
        f"Cache-Control: no-cache\r\nLast-Event-ID: {START_ID}\r\n\r\n"
    ).encode()
    counters = [SseCounter(request, job.target) for _ in range(job.clients)]

    async def connect(counter: SseCounter) -> None:
        await loop.create_connection(lambda: counter, "127.0.0.1", job.port)

    await asyncio.wait_for(asyncio.gather(*(connect(counter) for counter in counters)), 10)
    await asyncio.wait([counter.finished for counter in counters], timeout=job.timeout)
    for counter in counters:
        counter.finish(f"gave up after {job.timeout:.0f} s")
    await asyncio.sleep(0)  # let the transports close
    return [
        StreamResult(
            events=counter.events,
            notices=counter.notices,
            last_id=counter.last_id.decode(errors="replace"),
            seconds=counter.ended - counter.started,
            first_event_seconds=None if counter.first_event is None else counter.first_event - counter.started,
            body_bytes=counter.body_bytes,
            error=counter.error,
        )
        for counter in counters
    ]


# ---------------------------------------------------------------- the baseline


@dataclass(frozen=True)
class ConsumerJob:
    bootstrap_servers: str
    topic: str
    ends: tuple[int, ...]
    timeout: float


@dataclass(frozen=True)
class ConsumerReport:
    records: int
    value_bytes: int
    positions: list[int]
    polls: int  # getmany calls that returned records
    largest_poll: int  # records returned by one getmany, at most
    seconds: float  # consumer start -> last record
    wall_seconds: float
    cpu_seconds: float


def run_consumer(job: ConsumerJob) -> ConsumerReport:
    """In a process of its own: a plain aiokafka consumer reads the whole topic."""
    cpu, wall = time.process_time(), time.perf_counter()
    records, value_bytes, positions, polls, largest, seconds = uvloop.run(_consume(job))
    return ConsumerReport(records, value_bytes, positions, polls, largest, seconds, time.perf_counter() - wall,
                          time.process_time() - cpu)  # fmt: skip


async def _consume(job: ConsumerJob) -> tuple[int, int, list[int], int, int, float]:
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(bootstrap_servers=job.bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(job.topic, p) for p in range(len(job.ends))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        positions = [0] * len(partitions)
        records = value_bytes = polls = largest = 0
        deadline = time.monotonic() + job.timeout
        while positions < list(job.ends) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if batch:
                polls += 1
                largest = max(largest, sum(map(len, batch.values())))
            for tp, chunk in batch.items():
                records += len(chunk)
                value_bytes += sum(len(record.value or b"") for record in chunk)
                positions[tp.partition] = chunk[-1].offset + 1
        return records, value_bytes, positions, polls, largest, time.perf_counter() - started
    finally:
        await consumer.stop()


# ---------------------------------------------------------------- set-up


def partition_counts(records: int) -> list[int]:
    """Record i goes to partition i % PARTITIONS."""
    return [len(range(p, records, PARTITIONS)) for p in range(PARTITIONS)]


def value_lines(partition: int, count: int, value_bytes: int) -> bytes:
    """``count`` JSON values of about ``value_bytes`` bytes each, one a line, for kcat."""
    filler = b"abcdefghijklmnopqrstuvwxyz0123456789" * (value_bytes // 36 + 2)
    lines = []
    for k in range(count):
        sequence = k * PARTITIONS + partition
        head = b'{"seq":%d,"partition":%d,"pad":"' % (sequence, partition)
        start = sequence % 36
        lines.append(head + filler[start : start + max(0, value_bytes - len(head) - 2)] + b'"}\n')
    return b"".join(lines)


async def create_topic(bootstrap_servers: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()


async def end_offsets(bootstrap_servers: str, topic: str) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        return [int(ends[tp]) for tp in partitions]
    finally:
        await consumer.stop()


def produce(bootstrap_servers: str, topic: str, files: Sequence[Path]) -> float:
    """One kcat per partition, all at once; the seconds until every one has its acks."""
    started = time.perf_counter()
    deadline = time.monotonic() + PRODUCE_SECONDS
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for partition, path in enumerate(files):
            command = ["kcat", "-P", "-b", bootstrap_servers, "-t", topic, "-p", str(partition), "-z", "lz4",
                       "-X", "linger.ms=20", "-X", "batch.num.messages=10000"]  # fmt: skip
            with path.open("rb") as lines:
                processes.append(subprocess.Popen(command, stdin=lines, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.PIPE))  # fmt: skip
        for process in processes:
            _, errors = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if process.returncode != 0:
                raise BenchError(f"kcat exited with {process.returncode}: {errors.decode(errors='replace')[-2000:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return time.perf_counter() - started


def start_bridge(bootstrap_servers: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = ["kafka-sse-bridge", "serve", "--bootstrap-servers", bootstrap_servers, "--topics", "bench-*",
               "--host", "127.0.0.1", "--port", str(port), "--ring-records", str(RING_RECORDS),
               "--log-level", "warning"]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def _die_with_parent() -> None:
    """The bridge must not outlive a benchmark killed hard."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_for_bridge(process: subprocess.Popen[bytes], url: str, topic: str, log: Path) -> list[int]:
    """Until /readyz is 200 and /topics serves ``topic`` with every partition; its position."""
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"the bridge exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            try:
                if client.get("/readyz").status_code == 200:
                    served = {entry["topic"]: entry for entry in client.get("/topics").json()["topics"]}
                    entry = served.get(topic)
                    if entry is not None and entry["partitions"] == PARTITIONS:
                        return [int(offset) for offset in entry["position"]]
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise BenchError(f"the bridge did not serve {topic} within {READY_SECONDS:.0f} s:\n{log.read_text()}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def bridge_code() -> str:
    """The commit measured, and whether bridge/ had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=RESULTS.parents[2])
        return done.stdout.strip() if done.returncode == 0 else "?"

    dirty = git("status", "--porcelain", "--", "bridge")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in bridge/" if dirty else "")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def in_process(
    run: Callable[[Job], Report], job: Job, timeout: float, watched: dict[str, int]
) -> tuple[Report, dict[str, float]]:
    """``run(job)`` in a fresh process; also the CPU seconds the ``watched`` processes used meanwhile, and
    ``others``: the CPU every other process of the machine used in that time, per second (0 when nothing
    else runs; another test run on the machine skews every figure)."""
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    busy, own, wall = machine_busy_seconds(), time.process_time(), time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # leaving it terminates the worker
        report, worker = pool.apply_async(_measured, (run, job)).get(timeout=timeout + 60)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    ours = sum(used.values()) + worker + time.process_time() - own
    used["others"] = max(0.0, machine_busy_seconds() - busy - ours) / (time.perf_counter() - wall)
    return report, used


def _measured(run: Callable[[Job], Report], job: Job) -> tuple[Report, float]:
    """In the worker: the report, and every CPU second the worker spent (imports included)."""
    report = run(job)
    return report, time.process_time()


def peak_rss_mb(pid: int) -> float:
    """The most memory the process has held so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds all processors spent not idle since boot, from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class LivenessProbe:
    """``GET /healthz`` every PROBE_INTERVAL s on a fresh connection, from a
    thread of this (otherwise idle) process, while a scenario runs: its
    slowest answer is the longest the bridge's event loop kept everything else
    waiting (other streams, live records, heartbeats)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness-probe", daemon=True)

    def __enter__(self) -> LivenessProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.latencies) + self.failures < MAX_PROBES:
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.latencies.append(time.perf_counter() - started)
                else:
                    self.failures += 1
            except OSError:
                self.failures += 1
            finally:
                connection.close()
            self._stop.wait(PROBE_INTERVAL)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies) or [0.0]
        return {"probes": len(self.latencies), "failures": self.failures,
                "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
                "p99_ms": round(1000 * ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)], 1),
                "max_ms": round(1000 * ordered[-1], 1)}  # fmt: skip


# ---------------------------------------------------------------- profile


def profile_summary(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdecimal():
            continue
        count = int(count_text)
        frames = [_short_frame(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    below_root = [(name, n) for name, n in inclusive.most_common() if n < 0.95 * total]  # not main(), run() ...
    return {
        "samples": total,
        "rate_hz": PROFILE_RATE,
        "self": [[name, round(100 * n / total, 1)] for name, n in own.most_common(top)],
        "inclusive": [[name, round(100 * n / total, 1)] for name, n in below_root[:top]],
    }


def _short_frame(frame: str) -> str:
    frame = re.sub(r"\(/\S*?/site-packages/", "(", frame)
    return re.sub(r"\(" + re.escape(str(Path.cwd())) + "/", "(", frame)


# ---------------------------------------------------------------- the run


@dataclass
class Scenario:
    name: str
    events: int
    seconds: float
    events_per_s: int
    ratio_to_baseline: float | None
    client_cpu_percent: float
    bridge_cpu_percent: float | None
    broker_cpu_percent: float
    healthz_max_ms: float | None  # the bridge's slowest /healthz answer during the scenario
    others_cpu_percent: float  # what the rest of the machine used meanwhile: the noise in these figures
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


def _percent(cpu: float, seconds: float) -> float:
    return round(100 * cpu / seconds, 1) if seconds > 0 else 0.0


def baseline_scenario(kafka: LocalKafka, topic: str, ends: list[int], timeout: float) -> Scenario:
    assert kafka.process is not None
    job = ConsumerJob(kafka.bootstrap_servers, topic, tuple(ends), timeout)
    report, used = in_process(run_consumer, job, timeout, {"broker": kafka.process.pid})
    ok = report.positions == ends and report.records == sum(ends)
    return Scenario(
        name="baseline: aiokafka consumer",
        events=report.records,
        seconds=round(report.seconds, 3),
        events_per_s=round(report.records / report.seconds),
        ratio_to_baseline=1.0,
        client_cpu_percent=_percent(report.cpu_seconds, report.wall_seconds),
        bridge_cpu_percent=None,
        broker_cpu_percent=_percent(used["broker"], report.seconds),
        healthz_max_ms=None,
        others_cpu_percent=round(100 * used["others"], 1),
        ok=ok,
        detail={
            "value_mb_per_s": round(report.value_bytes / report.seconds / 1e6, 1),
            "positions": report.positions,
            "getmany_calls": report.polls,
            "largest_getmany_records": report.largest_poll,
        },
    )


def bridge_scenario(name: str, job: ClientJob, expected_id: str, baseline: float, watched: dict[str, int]) -> Scenario:
    with LivenessProbe(job.port) as probe:
        report, used = in_process(run_clients, job, job.timeout, watched)
    liveness = probe.summary()
    seconds = max(stream.seconds for stream in report.streams)
    events = sum(stream.events for stream in report.streams)
    ok = all(s.error is None and s.events == job.target and s.last_id == expected_id for s in report.streams)
    rate = events / seconds if seconds > 0 else 0.0
    return Scenario(
        name=name,
        events=events,
        seconds=round(seconds, 3),
        events_per_s=round(rate),
        ratio_to_baseline=round(rate / baseline, 3) if baseline else None,
        client_cpu_percent=_percent(report.cpu_seconds, report.wall_seconds),
        bridge_cpu_percent=_percent(used["bridge"], seconds),
        broker_cpu_percent=_percent(used["broker"], seconds),
        healthz_max_ms=liveness["max_ms"],
        others_cpu_percent=round(100 * used["others"], 1),
        ok=ok,
        detail={
            "bridge_peak_rss_mb_so_far": peak_rss_mb(watched["bridge"]),
            "healthz": liveness,
            "streams": [asdict(stream) for stream in report.streams],
            "sse_mb_per_s": round(sum(s.body_bytes for s in report.streams) / seconds / 1e6, 1) if seconds else 0,
        },
    )


COLUMNS = (
    ("scenario", 30),
    ("events", 9),
    ("seconds", 8),
    ("events/s", 9),
    ("vs baseline", 11),
    ("client CPU%", 11),
    ("bridge CPU%", 11),
    ("broker CPU%", 11),
    ("healthz max ms", 14),
    ("others CPU%", 11),
    ("ok", 3),
)


def print_table(scenarios: Sequence[Scenario]) -> None:
    def line(cells: Sequence[str]) -> str:
        widths = [width for _, width in COLUMNS]
        return " ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    def optional(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    header = line([title for title, _ in COLUMNS])
    print(header)
    print("-" * len(header))
    for s in scenarios:
        cells = [s.name, str(s.events), f"{s.seconds:.2f}", str(s.events_per_s), optional(s.ratio_to_baseline, ".3f")]
        cells += [f"{s.client_cpu_percent:.1f}", optional(s.bridge_cpu_percent, ".1f"), f"{s.broker_cpu_percent:.1f}"]
        cells += [optional(s.healthz_max_ms, ".0f"), f"{s.others_cpu_percent:.1f}", "yes" if s.ok else "NO"]
        print(line(cells))


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.catchup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the topic (default 1000000)")
    parser.add_argument("--value-bytes", type=int, default=100, help="approximate bytes per value (default 100)")
    parser.add_argument("--clients", type=int, default=4, help="clients of the concurrent scenario; 0 skips it")
    parser.add_argument("--timeout", type=float, default=300.0, help="hard bound per scenario, seconds")
    parser.add_argument("--profile", type=Path, help="also sample the bridge with py-spy, collapsed stacks here")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results JSON (default {RESULTS})")
    arguments = parser.parse_args(argv)
    if arguments.records < PARTITIONS or arguments.value_bytes < 1 or arguments.clients < 0 or arguments.timeout <= 0:
        parser.error("--records must be at least 3, --value-bytes and --timeout positive, --clients not negative")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the clean-up below runs
    records: int = arguments.records
    workdir = Path(tempfile.mkdtemp(prefix="bench-catchup-"))
    kafka = LocalKafka()
    bridge: subprocess.Popen[bytes] | None = None
    scenarios: list[Scenario] = []
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.catchup", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": os.getloadavg()},
        "versions": {"kafka": KAFKA_VERSION, "aiokafka": version("aiokafka"), "uvloop": version("uvloop")},
        "bridge_code": bridge_code(),
        "config": {"records": records, "value_bytes": arguments.value_bytes, "partitions": PARTITIONS,
                   "ring_records": RING_RECORDS, "clients": arguments.clients, "start_id": START_ID},
    }  # fmt: skip
    try:
        print("starting Kafka ...", flush=True)
        kafka.start()
        assert kafka.process is not None
        topic = f"bench-catchup-{uuid.uuid4().hex[:8]}"
        asyncio.run(create_topic(kafka.bootstrap_servers, topic))
        counts = partition_counts(records)
        files = []
        for partition, count in enumerate(counts):
            files.append(workdir / f"partition-{partition}.txt")
            files[-1].write_bytes(value_lines(partition, count, arguments.value_bytes))
        value_bytes = sum(path.stat().st_size for path in files) - records  # without the newlines
        print(f"producing {records} records ({value_bytes / records:.0f} bytes each) with kcat ...", flush=True)
        produce_seconds = produce(kafka.bootstrap_servers, topic, files)
        ends = asyncio.run(end_offsets(kafka.bootstrap_servers, topic))
        if ends != counts:
            raise BenchError(f"end offsets {ends} differ from the records sent {counts}")
        expected_id = ".".join(map(str, ends))
        results["produce"] = {"seconds": round(produce_seconds, 2), "records_per_s": round(records / produce_seconds),
                              "mean_value_bytes": round(value_bytes / records, 1), "end_offsets": ends}  # fmt: skip
        print(f"  {produce_seconds:.1f} s, {records / produce_seconds:.0f} records/s; end offsets {expected_id}")

        print("baseline: aiokafka consumer ...", flush=True)
        scenarios.append(baseline_scenario(kafka, topic, ends, arguments.timeout))
        baseline = float(scenarios[0].events_per_s)

        port = free_port()
        log = workdir / "bridge.log"
        bridge = start_bridge(kafka.bootstrap_servers, port, log)
        position = wait_for_bridge(bridge, f"http://127.0.0.1:{port}", topic, log)
        results["bridge_start_position"] = position
        results["bridge_peak_rss_mb_before_catchup"] = peak_rss_mb(bridge.pid)
        watched = {"bridge": bridge.pid, "broker": kafka.process.pid}
        plan = [("bridge catch-up, 1 client", 1)]
        if arguments.clients:
            plan.append((f"bridge catch-up, {arguments.clients} clients", arguments.clients))
        for name, clients in plan:
            print(f"{name} ...", flush=True)
            job = ClientJob(port, topic, clients, records, arguments.timeout)
            scenarios.append(bridge_scenario(name, job, expected_id, baseline, watched))
        if arguments.profile is not None:
            results["profile"] = profiled_run(arguments.profile, ClientJob(port, topic, 1, records, arguments.timeout),
                                              expected_id, baseline, watched)  # fmt: skip
        bridge_log = log.read_text(errors="replace")
        results["bridge_log_tail"] = bridge_log[-2000:] if bridge_log else ""
    finally:
        if bridge is not None:
            stop_process(bridge)
        kafka.remove()
        shutil.rmtree(workdir, ignore_errors=True)
        results["scenarios"] = [asdict(s) for s in scenarios]
        results["ok"] = bool(scenarios) and all(s.ok for s in scenarios)
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_text(json.dumps(results, indent=1) + "\n")
    print()
    print_table(scenarios)
    if "profile" in results:
        print_profile(results["profile"])
    print(f"\nresults: {arguments.output}")
    return 0 if results["ok"] else 1


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def profiled_run(
    path: Path, job: ClientJob, expected_id: str, baseline: float, watched: dict[str, int]
) -> dict[str, Any]:
    """One more single-client run while py-spy samples the bridge; its figures are not comparable."""
    command = ["py-spy", "record", "--pid", str(watched["bridge"]), "--rate", str(PROFILE_RATE), "--format", "raw",
               "--function", "--nonblocking", "--output", str(path)]  # fmt: skip
    print("bridge catch-up, 1 client, under py-spy ...", flush=True)
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # let py-spy attach
        scenario = bridge_scenario("bridge catch-up, 1 client, py-spy", job, expected_id, baseline, watched)
    finally:
        sampler.send_signal(signal.SIGINT)
        try:
            _, errors = sampler.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sampler.kill()
            _, errors = sampler.communicate()
    if not path.exists():
        raise BenchError(f"py-spy wrote no profile: {errors.decode(errors='replace')[-2000:]}")
    return {"scenario": asdict(scenario), "stacks": str(path), **profile_summary(path)}


def print_profile(profile: dict[str, Any]) -> None:
    scenario = profile["scenario"]
    figures = f"{scenario['events']} events in {scenario['seconds']:.2f} s, {scenario['events_per_s']} events/s"
    print(
        f"\nprofiled run (py-spy at {profile['rate_hz']} Hz, not comparable): {figures}, {profile['samples']} samples"
    )
    for title, note in (("self", ""), ("inclusive", "; frames in 95 % of them, main() and such, left out")):
        print(f"\nbridge, top functions by {title} time (% of samples{note}):")
        for name, share in profile[title]:
            print(f"  {share:5.1f}  {name}")


if __name__ == "__main__":
    sys.exit(main())
