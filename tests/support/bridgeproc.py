"""The bridge as users run it: the console script, in its own process, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bridge.kafka.local import free_port
from bridge.wire import cursor as cursors
from tests.support.cluster import Cluster, unique_topic
from tests.support.serving import wait_until_serving
from tests.support.sseparse import Event, Parser

TAGS = re.compile(cursors.TAG_SEPARATOR + cursors.TAG.pattern)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmHWM``: at its peak), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


def untagged(id: str) -> str:
    """An event id without its topics' tags: the offsets alone, as tests compute them."""
    return TAGS.sub("", id)


@dataclass
class BridgeProcess:
    bootstrap_servers: str
    flags: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="bridge-", suffix=".log")[1]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        options = {"bootstrap-servers": self.bootstrap_servers, "topics": "test-*", "host": "127.0.0.1",
                   "port": str(self.port), "heartbeat": "1", "metadata-interval": "0.3", **self.flags}  # fmt: skip
        return [
            "kafka-sse-bridge",
            "serve",
            *[part for name, value in options.items() for part in (f"--{name}", value)],
        ]

    async def start(self, timeout: float = 30.0, until: str = "/readyz") -> None:
        """Start, and wait until GET ``until`` answers 200. A free port can be
        taken between free_port() and the bridge's bind (by any process on the
        machine): then the bridge says so in one line, and a new port is tried."""
        for attempt in range(3):
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
            try:
                await wait_until_serving("bridge", self.process, f"{self.url}{until}", timeout, self.log)
                return
            except RuntimeError:
                if attempt == 2 or f"cannot listen on 127.0.0.1:{self.port}" not in self.log():
                    raise
                self.port = free_port()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code

    async def watch(self, topic: str) -> None:
        """Open a stream on ``topic`` and end it: the bridge reads the topic
        from now on, for its linger (300 s by default), as if a browser watched it."""
        async with open_stream(self.url, topic):
            pass

    async def wait_for_topic(self, topic: str, partitions: int = 1, timeout: float = 15.0) -> None:
        """Until the bridge serves ``topic`` with at least ``partitions`` partitions."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url) as client:
            while time.monotonic() < deadline:
                served = {
                    entry["topic"]: entry["partitions"] for entry in (await client.get("/topics")).json()["topics"]
                }
                if served.get(topic, 0) >= partitions:
                    return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"bridge does not serve {topic} with {partitions} partition(s)")


@asynccontextmanager
async def bridge_on_new_topic(
    bootstrap_servers: str, label: str, flags: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[BridgeProcess, str]]:
    """A new three-partition topic and a bridge serving it, on a broker a test
    has for itself; the bridge must stop cleanly on SIGTERM afterwards."""
    topic = await Cluster(bootstrap_servers).create_topic(unique_topic(label), partitions=3)
    bridge = BridgeProcess(bootstrap_servers, flags or {})
    await bridge.start()
    try:
        await bridge.wait_for_topic(topic, 3)
        yield bridge, topic
    finally:
        assert bridge.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn exits by raising the signal again


class Stream:
    """An open SSE response, read by a background task with the strict parser.

    Waiting for an event never cancels the read itself (cancelling httpx's
    byte iterator mid-read leaves the response unable to close)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = Parser()
        self._events: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._fed = asyncio.Event()  # set after every chunk read
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for chunk in self.response.aiter_raw():
                for event in self.parser.feed(chunk):
                    self._events.put_nowait(event)
                self._fed.set()
            self._events.put_nowait(EOFError("the server ended the stream"))
        except httpx.HTTPError as error:
            self._events.put_nowait(error)

    async def next_event(self, timeout: float = 10.0) -> Event:
        item = await asyncio.wait_for(self._events.get(), timeout)
        if isinstance(item, BaseException):
            self._events.put_nowait(item)
            raise item
        return item

    async def events(self, count: int, timeout: float = 20.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        return [await self.next_event(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    async def last_cursor_becomes(self, expected: str, timeout: float = 10.0) -> None:
        """Until the stream's last event id, its topics' tags aside, is ``expected``:
        events or id-only frames alike."""
        async with asyncio.timeout(timeout):
            while untagged(self.parser.last_event_id) != expected:
                self._fed.clear()
                await self._fed.wait()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@asynccontextmanager
async def open_stream(url: str, topic: str, last_event_id: str | None = None,
                      query: Mapping[str, str] | None = None,
                      headers: Mapping[str, str] | None = None) -> AsyncIterator[Stream]:  # fmt: skip
    async with open_sse(url, f"/sse/{topic}", last_event_id, list((query or {}).items()), headers) as stream:
        yield stream


@asynccontextmanager
async def open_sse(url: str, path: str, last_event_id: str | None = None,
                   params: Sequence[tuple[str, str]] = (),
                   headers: Mapping[str, str] | None = None) -> AsyncIterator[Stream]:  # fmt: skip
    """An SSE stream of any path, with repeatable query parameters."""
    headers = {**(headers or {}), **({"Last-Event-ID": last_event_id} if last_event_id is not None else {})}
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10.0, read=None)) as client,
        client.stream("GET", path, headers=headers, params=list(params)) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        try:
            yield stream
        finally:
            await stream.close()


def dechunk(body: bytes) -> bytes:
    """HTTP/1.1 chunked body to bytes; of a last chunk cut short, what arrived."""
    out, position = [], 0
    while (line_end := body.find(b"\r\n", position)) != -1:
        size = int(body[position:line_end], 16)
        out.append(body[line_end + 2 : line_end + 2 + size])
        position = line_end + 2 + size + 2
    return b"".join(out)
