"""Records produced to a real broker reach SSE clients of the bridge started
as users start it; resume from the ring buffer is exact."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import orjson
import pytest

from bridge.wire import cursor as cursors
from tests.support.bridgeproc import BridgeProcess, dechunk, open_stream, untagged
from tests.support.cluster import Cluster, unique_topic
from tests.support.scrape import eventually
from tests.support.sseparse import Event, Parser

pytestmark = pytest.mark.kafka

STALLED_SECONDS = 2


def numbered(count: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"n": n}) for n in range(start, start + count)]


def by_partition(
    events: Sequence[Event], sent: Sequence[tuple[int, int]], values: Sequence[bytes]
) -> dict[int, list[str]]:
    """Group what a client received by the partition each value was sent to."""
    partition_of = {value.decode(): partition for value, (partition, _) in zip(values, sent, strict=True)}
    grouped: dict[int, list[str]] = defaultdict(list)
    for event in events:
        grouped[partition_of[event.data]].append(event.data)
    return grouped


@pytest.mark.both_kafka_versions
async def test_every_record_arrives_once_in_partition_order(
    bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    values = numbered(300)
    async with open_stream(bridge.url, topic) as stream:
        sent = await cluster.produce(topic, values)
        events = await stream.events(len(values))
    assert sorted(event.data for event in events) == sorted(value.decode() for value in values)
    expected = by_partition([Event(data=value.decode()) for value in values], sent, values)
    assert by_partition(events, sent, values) == expected
    # each id is the cursor after its record: the record's offset + 1 in its partition
    offsets = {value.decode(): offset for value, (_, offset) in zip(values, sent, strict=True)}
    for event in events:
        partition = next(p for p, o in sent if o == offsets[event.data] and p == _partition(event, sent, values))
        assert cursors.parse(event.id)[partition] == offsets[event.data] + 1


def _partition(event: Event, sent: Sequence[tuple[int, int]], values: Sequence[bytes]) -> int:
    return sent[[value.decode() for value in values].index(event.data)][0]


async def test_subscribers_of_a_topic_get_the_same_stream(bridge: BridgeProcess, cluster: Cluster, topic: str) -> None:
    values = numbered(120)
    async with open_stream(bridge.url, topic) as first, open_stream(bridge.url, topic) as second, \
            open_stream(bridge.url, topic) as third:  # fmt: skip
        await cluster.produce(topic, values)
        streams = [await stream.events(len(values)) for stream in (first, second, third)]
    assert streams[0] == streams[1] == streams[2]
    assert len({event.id for event in streams[0]}) == len(values)


@pytest.mark.both_kafka_versions
async def test_resume_from_the_ring_is_exact(bridge: BridgeProcess, cluster: Cluster, topic: str) -> None:
    values = numbered(200)
    async with open_stream(bridge.url, topic) as witness:
        async with open_stream(bridge.url, topic) as client:
            await cluster.produce(topic, values[:100])
            before = await client.events(60)
        await cluster.produce(topic, values[100:])
        async with open_stream(bridge.url, topic, last_event_id=before[-1].id) as resumed:
            after = await resumed.events(140)
        everything = await witness.events(200)
    assert before + after == everything


async def test_resume_after_a_cut_in_the_middle_of_an_event(
    bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    """Read raw bytes and drop the connection inside an event: the browser keeps
    the id of the last complete event, and resuming from it loses nothing."""
    values = [orjson.dumps({"n": n, "pad": "x" * 300}) for n in range(150)]
    await bridge.watch(topic)  # read from now on, so the records are in the ring before anyone connects again
    await cluster.produce(topic, values)
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as full:
        everything = await full.events(len(values))
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0.0.0\r\n\r\n".encode())
    raw = b""
    while raw.count(b"data: ") < 40:
        raw += await asyncio.wait_for(reader.read(1000), 10)
    writer.close()
    body = raw.split(b"\r\n\r\n", 1)[1]
    cut = body.index(b"data: ", body.index(b'"n":39')) if b'"n":39' in body else len(body) - 7
    parser = Parser()
    seen = [event for event in parser.feed(dechunk(body[:cut])) if event.data]
    assert seen
    assert seen == everything[: len(seen)]
    async with open_stream(bridge.url, topic, last_event_id=parser.last_event_id) as resumed:
        rest = await resumed.events(len(values) - len(seen))
    assert seen + rest == everything


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compressed_records_are_delivered(
    bridge: BridgeProcess, cluster: Cluster, topic: str, codec: str
) -> None:
    values = numbered(50)
    async with open_stream(bridge.url, topic) as stream:
        await cluster.produce(topic, values, compression=codec)
        events = await stream.events(len(values))
    assert sorted(event.data for event in events) == sorted(value.decode() for value in values)


async def test_values_cannot_break_the_framing(bridge: BridgeProcess, cluster: Cluster, topic: str) -> None:
    values: list[bytes | None] = [
        b"line one\nline two", b"a\r\nb\rc", b"\n\nevent: evil\nid: 1\ndata: injected", b"", b"nul\x00inside",
        "caf\u00e9 \u2603".encode(), b"\xff\xfe not utf-8", None, b"x" * (1024 * 1024),
    ]  # fmt: skip
    async with open_stream(bridge.url, topic) as stream:
        await cluster.produce(topic, values, partition_of=[0] * len(values))
        events = await stream.events(len(values))
    assert [event.type for event in events] == ["message"] * 6 + ["binary", "tombstone", "message"]
    # CR, LF and CRLF all end a line in SSE: a client sees LF where the value had any of them
    assert [event.data for event in events[:6]] == [
        "line one\nline two", "a\nb\nc", "\n\nevent: evil\nid: 1\ndata: injected", "", "nul\x00inside",
        "caf\u00e9 \u2603",
    ]  # fmt: skip
    assert events[6].data == "//4gbm90IHV0Zi04"  # base64 of the raw bytes
    assert events[7].data == ""
    assert events[8].data == "x" * (1024 * 1024)
    assert [cursors.parse(event.id)[0] for event in events] == list(range(1, len(values) + 1))


async def test_event_type_comes_from_the_type_header(bridge: BridgeProcess, cluster: Cluster, topic: str) -> None:
    async with open_stream(bridge.url, topic) as stream:
        await cluster.produce(topic, [b"1"], headers=[("event-type", b"order")], partition_of=[0])
        await cluster.produce(topic, [b"2"], headers=[("event-type", b"gap")], partition_of=[0])  # reserved: ignored
        await cluster.produce(topic, [b"3"], headers=[("event-type", b"bad\ntype")], partition_of=[0])
        events = await stream.events(3)
    assert [(event.type, event.data) for event in events] == [("order", "1"), ("message", "2"), ("message", "3")]


async def test_heartbeats_flow_while_idle(bridge: BridgeProcess, topic: str) -> None:
    async with open_stream(bridge.url, topic) as stream:
        with pytest.raises(TimeoutError):
            await stream.next_event(timeout=2.5)
    assert stream.parser.retry == 2000
    assert stream.parser.comments.count("") >= 2  # heartbeat every second (--heartbeat 1)


async def test_response_headers(bridge: BridgeProcess, topic: str) -> None:
    async with open_stream(bridge.url, topic) as stream:
        headers = stream.response.headers
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"


async def test_unknown_internal_and_malformed_requests_get_json_errors(bridge: BridgeProcess, topic: str) -> None:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        for path in ("/sse/not-served", "/sse/__consumer_offsets", f"/sse/{unique_topic('absent')}"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"] == "unknown_topic"
        compact = ("-", "-3100.AA", "-0100.A", "-301.AAA", "-3100.AA=", "-1" + str(2**63) + ".A", "-3100.AAA@Zk3")
        for bad in ("abc", "1.-2.3", "1..2", "1.2.", "\u0661.2.3", "9" * 30, "1" * 9000, *compact):
            by_header = await client.get(f"/sse/{topic}", headers={b"Last-Event-ID": bad.encode()})
            by_query = await client.get(f"/sse/{topic}", params={"lastEventId": bad})
            for response in (by_header, by_query):
                assert response.status_code == 400, bad
                assert response.headers["content-type"] == "application/json"
                assert response.json()["error"] in {"bad_event_id", "bad_request"}


async def test_a_stream_request_with_a_body_is_refused(bridge: BridgeProcess, topic: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no length known: sent chunked
        for _ in range(3):
            yield b"x" * 1000

    # A body nobody reads would stop uvicorn reading the connection (and hearing the client leave).
    async with httpx.AsyncClient(base_url=bridge.url) as client, asyncio.timeout(20):
        sized = await client.request("GET", f"/sse/{topic}", content=b"x" * 70_000)
        chunked = await client.request("GET", f"/sse?topic={topic}", content=chunks())
        for response in (sized, chunked):
            assert response.status_code == 400
            assert response.json()["error"] == "body_not_allowed"
        async with client.stream("GET", f"/sse/{topic}", headers={"content-length": "0"}) as empty:
            assert empty.status_code == 200


async def test_cursor_past_the_end_is_reported_with_a_reset_event(bridge: BridgeProcess, cluster: Cluster,
                                                                  topic: str) -> None:  # fmt: skip
    async with open_stream(bridge.url, topic, last_event_id="0.500.0") as stream:
        reset = await stream.next_event(timeout=15)
        await cluster.produce(topic, [b"after"], partition_of=[1])
        after = await stream.next_event()
    assert reset.type == "reset"
    assert orjson.loads(reset.data) == {"topic": topic, "partitions": [{"partition": 1, "requested": 500, "end": 0}]}
    assert after.data == "after"
    assert untagged(after.id) == "0.1.0"


async def test_slow_subscriber_is_disconnected_while_a_fast_one_keeps_up(
    start_bridge: Callable[..., Any], cluster: Cluster, topic: str
) -> None:
    bridge = await start_bridge(outbox_bytes="1048576", stalled_client_seconds=str(STALLED_SECONDS))
    await bridge.wait_for_topic(topic, 3)
    # A client that does not read: once the socket buffers are full the server's send blocks.
    # (A receive buffer smaller than loopback's 32 KiB MSS would stall TCP itself, so keep the default.)
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port, limit=1024)
    writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    # ~12 MB: more than the loopback socket buffers plus the 1 MiB outbox bound
    values = [orjson.dumps({"n": n, "pad": "y" * 2000}) for n in range(6000)]
    async with open_stream(bridge.url, topic) as fast:
        await cluster.produce(topic, values)
        received = await fast.events(len(values), timeout=60)
        # It has taken nothing since the socket buffers filled: cut within the bound and a
        # quarter, counted once, while the fast one is not (it fell behind at most, and caught up).
        metrics = await eventually(bridge, lambda m: m.value("streams_closed_total", topic=topic, reason="slow") == 1,
                                   timeout=30)  # fmt: skip
    assert len({event.data for event in received}) == len(values)
    assert (metrics.value("fell_behind_total", topic=topic) or 0) >= 1
    assert metrics.value("subscribers_live", topic=topic) == 1
    # The slow connection was dropped by the server: reading now gets what had
    # reached this side and then meets its end, and what it got has no hole.
    raw, deadline = b"", time.monotonic() + 30
    with contextlib.suppress(ConnectionResetError):  # aborted: what was not yet read may be gone
        while chunk := await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic())):
            raw += chunk  # a TimeoutError here means the server never closed the slow connection
    writer.close()
    body = dechunk(raw.split(b"\r\n\r\n", 1)[1])
    got = [event.data for event in Parser().feed(body)]
    assert len(got) < len(values)
    assert got == [event.data for event in received[: len(got)]]
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_partitions_and_topics_added_later_are_served(
    bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    async with open_stream(bridge.url, topic) as stream:  # connected before the partition exists
        await cluster.add_partitions(topic, 4)
        await bridge.wait_for_topic(topic, 4)
        await cluster.produce(topic, [b"to-the-new-partition"], partition_of=[3], partitions=4)
        event = await stream.next_event()
    assert event.data == "to-the-new-partition"
    assert cursors.parse(event.id) == (0, 0, 0, 1)
    created_later = await cluster.create_topic(unique_topic("later"), partitions=1)
    await cluster.produce(created_later, [b"first"], partitions=1)
    await bridge.wait_for_topic(created_later)
    async with open_stream(bridge.url, created_later, last_event_id="0") as stream:
        assert (await stream.next_event()).data == "first"


async def test_health_and_readiness(bridge: BridgeProcess) -> None:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
