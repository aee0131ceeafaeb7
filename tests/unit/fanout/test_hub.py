"""The hub's fan-out logic with plain records; the Kafka side has its own integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bridge.fanout.channel import Channel
from bridge.fanout.outbox import CloseReason, Subscriber
from bridge.fanout.ring import RingBudget
from tests.support.records import Record, plain
from tests.support.sseparse import Event, Parser


def channel(start: Sequence[int] = (0, 0), ring_records: int = 100) -> Channel:
    return Channel(
        "t", start, ring_records=ring_records, ring_bytes=1 << 20, type_header="event-type", budget=RingBudget(1 << 30)
    )


def events_of(data: bytes | None) -> list[Event]:
    assert data is not None
    return Parser().feed(data)


async def test_a_batch_is_encoded_once_and_shared_by_every_subscriber() -> None:
    topic = channel()
    subscribers = [Subscriber(limit=1 << 20) for _ in range(3)]
    for subscriber in subscribers:
        plain(topic).subscribe(subscriber, None)
    topic.publish([Record(0, 0, b"a"), Record(1, 0, b"b"), Record(0, 1, b"c")])
    chunks = [await subscriber.take(1) for subscriber in subscribers]
    assert chunks[0] is chunks[1] is chunks[2]
    assert events_of(chunks[0]) == [Event("a", id="1.0"), Event("b", id="1.1"), Event("c", id="2.1")]


async def test_a_subscriber_past_its_bound_leaves_the_live_path_and_the_others_do_not() -> None:
    topic = channel()
    slow, fast = Subscriber(limit=100), Subscriber(limit=1 << 20)
    plain(topic).subscribe(slow, None)
    plain(topic).subscribe(fast, None)
    for offset in range(10):
        topic.publish([Record(0, offset, b"x" * 40)])
        if offset % 2:
            assert await fast.take(1)
    assert slow.reason is None
    assert slow not in plain(topic).subscribers
    assert slow in plain(topic).behind
    assert fast in plain(topic).subscribers
    assert topic.stats.fell_behind == 1


async def test_an_empty_outbox_takes_a_batch_larger_than_the_bound() -> None:
    topic = channel()
    subscriber = Subscriber(limit=1024)
    plain(topic).subscribe(subscriber, None)
    topic.publish([Record(0, 0, b"x" * 4096)])
    assert subscriber in plain(topic).subscribers
    topic.publish([Record(0, 1, b"y")])
    assert subscriber in plain(topic).behind


async def test_take_gives_a_heartbeat_slot_after_the_idle_timeout() -> None:
    subscriber = Subscriber(limit=1024)
    assert await subscriber.take(0.01) == b""
    subscriber.close(CloseReason.SHUTDOWN)
    assert await subscriber.take(0.01) is None


async def test_resume_replays_exactly_what_the_cursor_has_not_seen() -> None:
    topic = channel()
    topic.publish([Record(0, 0, b"a"), Record(1, 0, b"b"), Record(0, 1, b"c"), Record(1, 1, b"d")])
    subscriber = Subscriber(limit=1 << 20)
    plain(topic).subscribe(subscriber, ((1, 1),))  # seen a and b
    topic.publish([Record(0, 2, b"e")])  # before it took the replay: fed from the ring too
    assert [e.data for e in events_of(await subscriber.take(1))] == ["c", "d", "e"]
    assert subscriber in plain(topic).subscribers  # level: live
    topic.publish([Record(0, 3, b"f")])
    assert [e.data for e in events_of(await subscriber.take(1))] == ["f"]


async def test_ids_replayed_to_a_cursor_from_a_further_replica_never_go_back() -> None:
    topic = channel()
    # this replica read partition 0 up to offset 3 before partition 1's record
    topic.publish([Record(0, 0, b"a"), Record(0, 1, b"b"), Record(0, 2, b"c"), Record(1, 0, b"x"), Record(0, 3, b"d")])
    subscriber = Subscriber(limit=1 << 20)
    plain(topic).subscribe(subscriber, ((2, 0),))  # another replica delivered a and b, not x
    events = events_of(await subscriber.take(1))
    assert [(e.data, e.id) for e in events] == [("c", "3.0"), ("x", "3.1"), ("d", "4.1")]


async def test_a_cursor_ahead_of_the_channel_waits_until_it_catches_up() -> None:
    topic = channel()
    subscriber = Subscriber(limit=1 << 20)
    plain(topic).subscribe(subscriber, ((2, 0),))  # another replica has read two records of partition 0
    assert subscriber not in plain(topic).subscribers
    topic.publish([Record(0, 0, b"a")])
    assert subscriber not in plain(topic).subscribers
    topic.publish([Record(0, 1, b"b"), Record(1, 0, b"x")])
    assert subscriber in plain(topic).behind  # no longer waiting: fed from the ring
    assert [(e.data, e.id) for e in events_of(await asyncio.wait_for(subscriber.take(1), 1))] == [("x", "2.1")]
    assert subscriber in plain(topic).subscribers
    assert await subscriber.take(0.01) == b""  # the batch that brought it level is not sent again live
    topic.publish([Record(0, 2, b"c")])
    assert [(e.data, e.id) for e in events_of(await subscriber.take(1))] == [("c", "3.1")]


async def test_close_all_ends_live_and_waiting_subscribers() -> None:
    topic = channel()
    live, waiting = Subscriber(limit=1024), Subscriber(limit=1024)
    plain(topic).subscribe(live, None)
    plain(topic).subscribe(waiting, ((9, 9),))
    plain(topic).close_all(CloseReason.SHUTDOWN)
    assert live.reason is waiting.reason is CloseReason.SHUTDOWN
    assert not plain(topic).subscribers


async def test_a_batch_larger_than_the_bound_is_written_in_pieces_of_the_bound() -> None:
    subscriber = Subscriber(limit=1000)
    batch = bytes(range(256)) * 10  # 2560 bytes: admitted whole into an empty outbox
    subscriber.push(batch)
    pieces = [await subscriber.take(1)]
    subscriber.push(b"x" * 100)  # the batch counts as taken once its first piece is: this one fits
    pieces += [await subscriber.take(1) for _ in range(3)]
    assert [len(piece or b"") for piece in pieces] == [1000, 1000, 560, 100]
    assert b"".join(piece or b"" for piece in pieces) == batch + b"x" * 100
    assert subscriber.reason is None


def test_the_channel_names_the_types_its_type_header_gave_its_recent_records() -> None:
    topic = channel(ring_records=4)
    topic.publish([Record(0, 0, b"a", headers=[("event-type", b"order")]), Record(0, 1, b"b")])
    topic.publish([Record(1, 0, b"c", headers=[("event-type", b"gap")]), Record(1, 1, b"d", headers=[("x", b"y")])])
    assert topic.named_event_types() == ["order"]  # "gap" is the bridge's own: such a record is a message
    topic.publish([Record(0, 2, b"e", headers=[("event-type", b"paid")]), Record(1, 2, b"f")])
    assert topic.named_event_types() == ["paid"]  # the ring keeps 4: "order" is gone
    assert topic.named_event_types(recent=1) == []
