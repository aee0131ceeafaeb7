"""Subscribers off the live path: fed from the rings at their own pace, then live again, or sent to Kafka."""

from __future__ import annotations

import orjson

from bridge.fanout.hub import Hub
from bridge.fanout.outbox import REPLAY_CHUNK_BYTES, CloseReason, Cursor, Subscriber
from bridge.fanout.views import Subscription, View
from bridge.wire.filters import parse_filter
from bridge.wire.formats import Format
from tests.support.records import Record
from tests.support.sseparse import Event, Parser

ALERTS = parse_filter([("where", "type==alert")])


def hub(ring_records: int = 1000) -> Hub:
    made = Hub(ring_records=ring_records, ring_bytes=1 << 30, ring_total_bytes=1 << 30, type_header=None)
    made.open_channel("a", (0, 0))
    made.open_channel("b", (0,))
    return made


def record(offset: int, partition: int = 0, kind: str = "alert", pad: int = 40) -> Record:
    return Record(partition, offset, orjson.dumps({"type": kind, "n": offset, "pad": "x" * pad}))


async def drain(subscriber: Subscriber, parser: Parser) -> tuple[list[Event], list[int]]:
    """Everything the subscriber has to write now, and the size of each take."""
    got: list[Event] = []
    sizes: list[int] = []
    while data := await subscriber.take(0.01):
        sizes.append(len(data))
        got += parser.feed(data)
    return got, sizes


async def test_a_subscriber_behind_is_fed_from_the_ring_at_its_pace_and_rejoins_live() -> None:
    bridge = hub()
    view = bridge.view(Subscription.of(["a"]))
    slow, fast = Subscriber(limit=1024), Subscriber(limit=1 << 20)
    view.subscribe(slow, None)
    view.subscribe(fast, None)
    channel = bridge.channels["a"]
    for offset in range(0, 600, 3):  # 200 batches of 3 records, about 40 KB
        channel.publish([record(offset, 0), record(offset + 1, 1), record(offset + 2, 0)])
    assert slow in view.behind
    assert fast in view.subscribers
    assert slow.room() >= 0  # the outbox never passed its bound: it holds a position, not records
    slow_parser, fast_parser = Parser(), Parser()
    got, sizes = await drain(slow, slow_parser)
    # paced: one chunk of the bound at most, then pieces of about the bound (one event past it at most)
    assert all(size < 1024 + 200 for size in sizes), sizes
    assert len(sizes) > 30
    assert got == (await drain(fast, fast_parser))[0]  # the same events with the same ids, each once
    assert slow in view.subscribers
    assert slow not in view.behind
    assert (channel.stats.fell_behind, channel.stats.rejoined_live) == (1, 1)
    channel.publish([record(600, 1)])
    assert [e.id for e in slow_parser.feed(await slow.take(1) or b"")] == ["600.601"]


async def test_a_behind_subscriber_takes_its_own_pieces_not_the_whole_ring() -> None:
    bridge = hub()
    view = bridge.view(Subscription.of(["a"]))
    subscriber = Subscriber(limit=1 << 20)
    view.subscribe(subscriber, ((0, 0),))  # a resume: fed from the ring's start
    bridge.channels["a"].publish([record(offset, pad=1000) for offset in range(400)])  # ~400 KB
    sizes = (await drain(subscriber, Parser()))[1]
    assert len(sizes) > 5
    assert max(sizes) < REPLAY_CHUNK_BYTES + 1100


async def test_a_subscriber_the_ring_gave_up_is_caught_up_from_the_last_id_it_was_given() -> None:
    bridge = hub(ring_records=10)
    view = bridge.view(Subscription.of(["a"]))
    subscriber = Subscriber(limit=200)
    asked: list[Cursor] = []
    subscriber.catch_up = asked.append
    view.subscribe(subscriber, None)
    channel = bridge.channels["a"]
    for offset in range(4):
        channel.publish([record(offset, pad=150)])  # the first fits, the next ones leave it behind
    parser = Parser()
    assert [e.data for e in parser.feed(await subscriber.take(1) or b"")] == [record(0, pad=150).value.decode()]  # type: ignore[union-attr]
    channel.publish([record(offset, pad=150) for offset in range(4, 20)])  # the ring keeps 10: offset 1 is gone
    assert await subscriber.take(0.01) == b""  # a heartbeat: it waits for its catch-up
    assert asked == [((1, 0),)]
    assert parser.last_event_id == "1.0"  # exactly where the client is
    assert subscriber not in view.behind
    assert subscriber not in view.subscribers
    view.subscribe(subscriber, ((18, 0),))  # the catch-up read Kafka up to offset 18: back through the ring
    assert [e.id for e in parser.feed(await subscriber.take(1) or b"")] == ["19.0", "20.0"]
    assert subscriber in view.subscribers


async def test_without_a_catch_up_it_is_closed_to_reconnect_with_its_last_id() -> None:
    bridge = hub(ring_records=2)
    view = bridge.view(Subscription.of(["a"]))
    subscriber = Subscriber(limit=200)
    view.subscribe(subscriber, None)
    for offset in range(6):
        bridge.channels["a"].publish([record(offset)])
    assert await subscriber.take(1)
    assert await subscriber.take(0.01) is None
    assert subscriber.reason is CloseReason.ERROR


async def test_behind_on_a_filtered_envelope_view_it_gets_what_live_gets() -> None:
    bridge = hub()
    view = bridge.view(Subscription.of(["a"], ALERTS, Format.ENVELOPE))
    slow, fast = Subscriber(limit=300), Subscriber(limit=1 << 20)
    view.subscribe(slow, None)
    view.subscribe(fast, None)
    view.advance_every = 0.0
    for offset in range(0, 60, 2):
        bridge.channels["a"].publish([record(offset, kind="alert"), record(offset + 1, kind="info")])
    slow_parser, fast_parser = Parser(), Parser()
    slow_got, fast_got = (await drain(slow, slow_parser))[0], (await drain(fast, fast_parser))[0]
    assert slow_got == fast_got
    assert len(slow_got) == 30
    assert all(orjson.loads(e.data)["topic"] == "a" for e in slow_got)
    assert slow_parser.last_event_id == fast_parser.last_event_id == "60.0"  # past the skipped last record
    assert slow in view.subscribers


async def test_behind_on_several_topics_each_topic_in_order_with_ids_covering_all() -> None:
    bridge = hub()
    view: View = bridge.view(Subscription.of(["a", "b"]))
    slow, fast = Subscriber(limit=200), Subscriber(limit=1 << 20)
    view.subscribe(slow, None)
    view.subscribe(fast, None)
    for offset in range(20):
        bridge.channels["a"].publish([Record(0, offset, b"a%d" % offset)])
        bridge.channels["b"].publish([Record(0, offset, b"b%d" % offset)])
    slow_parser, fast_parser = Parser(), Parser()
    slow_got, fast_got = (await drain(slow, slow_parser))[0], (await drain(fast, fast_parser))[0]
    ids = {e.data: e.id for e in fast_got}
    for topic in "ab":
        assert [e.data for e in slow_got if e.data[0] == topic] == [f"{topic}{n}" for n in range(20)]
    # ids cover both topics, each at the position of what the client was given
    for event in slow_got:
        a, b = (sum(map(int, part.split("@")[0].split("."))) for part in event.id.split("~"))
        seen = [e.data for e in slow_got[: slow_got.index(event) + 1]]
        assert (a, b) == (sum(d[0] == "a" for d in seen), sum(d[0] == "b" for d in seen))
    assert len(ids) == len(slow_got) == 40
    assert slow_parser.last_event_id == fast_parser.last_event_id
    assert slow in view.subscribers


async def test_behind_on_several_topics_a_busy_topic_does_not_starve_the_others() -> None:
    bridge = hub()
    view = bridge.view(Subscription.of(["a", "b"]))
    subscriber = Subscriber(limit=1000)
    view.subscribe(subscriber, ((0, 0), (0,)))  # a resume: behind on both rings
    bridge.channels["a"].publish([Record(0, offset, b"a" * 100) for offset in range(100)])
    bridge.channels["b"].publish([Record(0, offset, b"b" * 100) for offset in range(100)])
    first, second = events(await subscriber.take(1)), events(await subscriber.take(1))
    assert {e.data[0] for e in first} == {"a"}
    assert {e.data[0] for e in second} == {"b"}  # b's turn, though a has more


def events(data: bytes | None) -> list[Event]:
    assert data is not None
    return Parser().feed(data)


async def test_a_stream_the_ring_still_covers_stays_on_the_ring_when_older_entries_go() -> None:
    # It starts from the ring's oldest entry; entries it does not need (below its cursor) given up
    # before its first take must not send it to Kafka: back from a catch-up, it would go straight back
    # there (a slot, a consumer, no record read) each time a publish came first, as in a burst.
    bridge = hub(ring_records=10)
    view = bridge.view(Subscription.of(["a"]))
    channel = bridge.channels["a"]
    channel.publish([record(offset) for offset in range(10)])
    subscriber = Subscriber(limit=1 << 20)
    asked: list[Cursor] = []
    subscriber.catch_up = asked.append
    view.subscribe(subscriber, ((5, 0),))  # covered: offsets 5.. are in the ring
    channel.publish([record(offset) for offset in range(10, 13)])  # gives up offsets 0..2, which it had
    got, _ = await drain(subscriber, Parser())
    assert asked == []
    assert [orjson.loads(event.data)["n"] for event in got] == list(range(5, 13))
    assert subscriber in view.subscribers
