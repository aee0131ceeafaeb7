"""Views: several topics on one stream, filters and formats, with plain records."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from bridge.fanout import batch
from bridge.fanout.hub import Hub
from bridge.fanout.outbox import CloseReason, Subscriber
from bridge.fanout.views import Subscription
from bridge.wire import cursor as cursors
from bridge.wire import formats
from bridge.wire.filters import NO_FILTER, parse_filter
from bridge.wire.formats import Format, ParsedRecord
from tests.support.records import Record
from tests.support.sseparse import Event, Parser


def hub() -> Hub:
    made = Hub(ring_records=100, ring_bytes=1 << 20, ring_total_bytes=1 << 30, type_header=None)
    made.open_channel("a", (0, 0))
    made.open_channel("b", (0,))
    return made


def events(data: bytes | None) -> list[Event]:
    assert data is not None
    return Parser().feed(data)


def alert(offset: int, kind: str, partition: int = 0) -> Record:
    return Record(partition, offset, orjson.dumps({"type": kind, "n": offset}))


ALERTS = parse_filter([("where", "type==alert")])


async def test_several_topics_interleave_in_arrival_order_with_one_id_covering_all() -> None:
    bridge = hub()
    subscriber = Subscriber(1 << 20)
    # the order a URL lists its topics in does not matter: ids follow topic names
    bridge.view(Subscription.of(["b", "a"])).subscribe(subscriber, None)
    bridge.channels["a"].publish([Record(0, 0, b"a0"), Record(1, 0, b"a1")])
    bridge.channels["b"].publish([Record(0, 0, b"b0")])
    bridge.channels["a"].publish([Record(0, 1, b"a2")])
    received = events(await subscriber.take(1))
    assert [(e.data, e.id) for e in received] == [("a0", "1.0~0"), ("a1", "1.1~0"), ("b0", "1.1~1"), ("a2", "2.1~1")]


async def test_streams_of_one_subscription_share_one_view_and_one_chunk() -> None:
    bridge = hub()
    raw = [Subscriber(1 << 20) for _ in range(3)]
    envelope = Subscriber(1 << 20)
    for subscriber in raw:
        bridge.view(Subscription.of(["a", "b"], ALERTS)).subscribe(subscriber, None)
    bridge.view(Subscription.of(["b", "a"], ALERTS, Format.ENVELOPE)).subscribe(envelope, None)
    assert len(bridge.views) == 2
    bridge.channels["a"].publish([alert(0, "alert"), alert(1, "info"), alert(2, "alert")])
    chunks = [await subscriber.take(1) for subscriber in raw]
    assert chunks[0] is chunks[1] is chunks[2]
    assert [(e.data, e.id) for e in events(chunks[0])] == [
        ('{"type":"alert","n":0}', "1.0~0"),
        ('{"type":"alert","n":2}', "3.0~0"),
    ]
    enveloped = events(await envelope.take(1))
    assert [(orjson.loads(e.data)["offset"], e.id) for e in enveloped] == [(0, "1.0~0"), (2, "3.0~0")]


async def test_a_value_is_parsed_once_per_record_whatever_the_views(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    loads: Callable[[bytes], object] = orjson.loads

    def counting(value: bytes) -> object:
        parsed.append(value)
        return loads(value)

    other = parse_filter([("where", "n==1")])
    monkeypatch.setattr(orjson, "loads", counting)  # as the bridge's modules call it
    bridge = hub()
    for subscription in (
        Subscription.of(["a"], ALERTS),
        Subscription.of(["a"], ALERTS, Format.ENVELOPE),
        Subscription.of(["a", "b"], ALERTS),
        Subscription.of(["a"], other, Format.ENVELOPE),
    ):
        for _ in range(5):
            bridge.view(subscription).subscribe(Subscriber(1 << 20), None)
    bridge.channels["a"].publish([alert(0, "alert"), alert(1, "info"), Record(1, 0, b"not json")])
    assert len(parsed) == 3


async def test_a_filtered_live_stream_knows_its_id_past_skipped_records() -> None:
    bridge = hub()
    filtered, unfiltered = Subscriber(1 << 20), Subscriber(1 << 20)
    view = bridge.view(Subscription.of(["a", "b"], ALERTS))
    view.subscribe(filtered, None)
    bridge.view(Subscription.of(["a", "b"])).subscribe(unfiltered, None)
    assert unfiltered.live_id is None  # every record carries its id
    parser = Parser()
    # A batch that ends on skipped records ends with an id-only frame ...
    bridge.channels["a"].publish([alert(0, "alert"), alert(1, "info"), alert(0, "info", partition=1)])
    assert [(e.data, e.id) for e in parser.feed(await filtered.take(1) or b"")] == [('{"type":"alert","n":0}', "1.0~0")]
    assert parser.last_event_id == "2.1~0"
    # ... at most once a second; the heartbeat (stream.py) asks live_id in between.
    bridge.channels["b"].publish([alert(0, "info")])
    assert await filtered.take(0.01) == b""
    assert filtered.live_id is not None
    assert filtered.live_id() == "2.1~1"
    view.advance_every = 0.0
    bridge.channels["b"].publish([alert(1, "info")])
    assert parser.feed(await filtered.take(1) or b"") == []
    assert parser.last_event_id == "2.1~2"


async def test_resume_replays_each_topic_from_its_own_part_of_the_id() -> None:
    bridge = hub()
    bridge.channels["a"].publish([Record(0, 0, b"a0"), Record(1, 0, b"a1"), Record(0, 1, b"a2")])
    bridge.channels["b"].publish([Record(0, 0, b"b0"), Record(0, 1, b"b1")])
    subscriber = Subscriber(1 << 20)
    bridge.view(Subscription.of(["a", "b"])).subscribe(subscriber, ((1, 0), (1,)))  # seen a0 and b0
    replayed = events(await subscriber.take(1))
    assert [(e.data, e.id) for e in replayed] == [("a1", "1.1~1"), ("a2", "2.1~1"), ("b1", "2.1~2")]


@pytest.mark.parametrize("format", [Format.RAW, Format.ENVELOPE])
async def test_a_view_over_a_wide_and_a_narrow_topic_writes_the_same_ids_live_and_replayed(format: Format) -> None:
    bridge = Hub(ring_records=1000, ring_bytes=1 << 24, ring_total_bytes=1 << 30, type_header=None)
    start = [10**9 + p * 300 for p in range(256)]
    bridge.open_channel("a", start, tag="Zk3q")
    bridge.open_channel("b", (5, 6), tag="AB-_")
    view = bridge.view(Subscription.of(["a", "b"], format=format))
    live = Subscriber(1 << 24)
    view.subscribe(live, None)
    cursor = (tuple(start), (5, 6))
    arrivals = [("a", 7, start[7]), ("a", 200, start[200]), ("b", 1, 6), ("a", 7, start[7] + 1), ("a", 0, start[0]),
                ("b", 0, 5)]  # fmt: skip
    records = [(name, Record(p, offset, b"%d" % n)) for n, (name, p, offset) in enumerate(arrivals)]
    for name, record in records:
        bridge.channels[name].publish([record])
    resumed = Subscriber(1 << 24)
    view.subscribe(resumed, cursor)  # replayed topic after topic: a's records, then b's
    for subscriber, order in ((live, records), (resumed, sorted(records, key=lambda item: item[0]))):
        positions = [list(own) for own in cursor]
        expected = []
        for name, record in order:
            positions[name == "b"][record.partition] = record.offset + 1
            expected.append(tuple(map(tuple, positions)))
        received = events(await subscriber.take(1))
        assert [cursors.parse_streams(e.id, 2) for e in received] == [(own, ("Zk3q", "AB-_")) for own in expected]
        assert received[0].id.split("~")[0].startswith(cursors.COMPACT)
        assert received[-1].id.split("~")[1] == "6.7@AB-_"


async def test_a_cursor_that_predates_a_partition_is_replayed_with_the_ids_live_streams_got() -> None:
    bridge = hub()
    live = Subscriber(1 << 20)
    bridge.view(Subscription.of(["a"])).subscribe(live, None)
    bridge.channels["a"].publish([Record(0, 0, b"a0"), Record(1, 0, b"a1")])
    resumed = Subscriber(1 << 20)
    bridge.view(Subscription.of(["a"])).subscribe(resumed, ((0,),))  # partition 1: from its beginning
    assert [e.id for e in events(await resumed.take(1))] == [e.id for e in events(await live.take(1))] == ["1.0", "1.1"]


async def test_a_filtered_resume_ends_with_an_id_past_what_it_skipped() -> None:
    bridge = hub()
    bridge.channels["a"].publish([alert(0, "alert"), alert(1, "info")])
    bridge.channels["b"].publish([alert(0, "info")])
    subscriber = Subscriber(1 << 20)
    bridge.view(Subscription.of(["a", "b"], ALERTS)).subscribe(subscriber, ((0, 0), (0,)))
    parser = Parser()
    replayed = parser.feed(await subscriber.take(1) or b"")
    assert [(e.data, e.id) for e in replayed] == [('{"type":"alert","n":0}', "1.0~0")]
    assert parser.last_event_id == "2.0~1"


async def test_a_cursor_ahead_in_one_topic_waits_for_that_topic() -> None:
    bridge = hub()
    subscriber = Subscriber(1 << 20)
    view = bridge.view(Subscription.of(["a", "b"]))
    view.subscribe(subscriber, ((0, 0), (1,)))  # another replica has read b's first record
    bridge.channels["a"].publish([Record(0, 0, b"a0")])
    assert subscriber not in view.subscribers
    bridge.channels["b"].publish([Record(0, 0, b"b0")])
    assert subscriber in view.behind  # no longer waiting: fed from the rings
    assert [(e.data, e.id) for e in events(await subscriber.take(1))] == [("a0", "1.0~1")]
    assert subscriber in view.subscribers
    assert await subscriber.take(0.01) == b""  # b0 was the other replica's to deliver


async def test_a_view_without_streams_leaves_the_channels() -> None:
    bridge = hub()
    subscriber = Subscriber(1 << 20)
    view = bridge.view(Subscription.of(["a", "b"], ALERTS))
    view.subscribe(subscriber, None)
    assert view in bridge.channels["a"].views
    view.unsubscribe(subscriber)
    assert not bridge.channels["a"].views
    assert not bridge.channels["b"].views
    assert not bridge.views


async def test_an_envelope_is_encoded_once_per_record_whatever_the_views(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[int] = []
    encode = formats.envelope_event

    def counting(topic: str, parsed: ParsedRecord, *, id: str | None, type_header: str | None) -> bytes:
        encoded.append(parsed.record.offset)
        return encode(topic, parsed, id=id, type_header=type_header)

    monkeypatch.setattr(batch, "envelope_event", counting)
    bridge = hub()
    for topics, wanted in ((["a"], ALERTS), (["a", "b"], ALERTS), (["a", "b"], NO_FILTER), (["a"], NO_FILTER)):
        bridge.view(Subscription.of(topics, wanted, Format.ENVELOPE)).subscribe(Subscriber(1 << 20), None)
    bridge.channels["a"].publish([alert(0, "alert"), alert(1, "info"), alert(2, "alert")])
    assert sorted(encoded) == [0, 1, 2]


async def test_open_streams_lists_each_stream_once() -> None:
    bridge = hub()
    live, waiting, other = Subscriber(1024), Subscriber(1024), Subscriber(1024)
    bridge.view(Subscription.of(["a"])).subscribe(live, None)
    bridge.view(Subscription.of(["a"])).subscribe(waiting, ((9, 9),))  # ahead of the channel: waits
    bridge.view(Subscription.of(["a"], parse_filter([("key", "k")]))).subscribe(other, None)
    assert sorted(map(id, bridge.open_streams())) == sorted(map(id, (live, waiting, other)))


async def test_dropping_a_channel_ends_its_streams_frees_its_ring_and_keeps_its_counters() -> None:
    made = hub()
    both, only_b = Subscriber(limit=1 << 20), Subscriber(limit=1 << 20)
    made.view(Subscription.of(["a", "b"])).subscribe(both, None)
    made.view(Subscription.of(["b"])).subscribe(only_b, None)
    made.channels["a"].publish([Record(0, 0, b"x")])
    made.channels["a"].stats.streams_opened = 1
    assert made.budget.used > 0
    dropped = made.drop_channel("a", CloseReason.SHUTDOWN)
    assert dropped is not None
    assert "a" not in made.channels
    assert both.reason is CloseReason.SHUTDOWN
    assert only_b.reason is None
    assert list(made.views) == [Subscription.of(["b"])]
    assert made.budget.used == 0
    assert made.drop_channel("a") is None
    again = made.open_channel("a", (1, 0))  # read again later: a new ring, the same counters
    assert len(again.ring) == 0
    assert again.position == [1, 0]
    assert again.stats.streams_opened == 1
