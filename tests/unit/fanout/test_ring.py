from __future__ import annotations

import os
import tracemalloc

from aiokafka.structs import ConsumerRecord

from bridge.fanout.ring import Entry, RingBudget, RingBuffer, entry_memory
from bridge.wire import cursor as cursors
from bridge.wire.events import record_event
from tests.support.records import Record


def entry(partition: int, offset: int, timestamp_ms: int = 0) -> Entry:
    frame = f"{partition}:{offset}".encode()
    return Entry(partition, offset, frame, timestamp_ms, Record(partition, offset, frame))


def filled(max_records: int = 4, max_bytes: int = 1000) -> RingBuffer:
    """Partitions 0 and 1 start at 10 and 20; six records interleaved."""
    ring = RingBuffer([10, 20], max_records=max_records, max_bytes=max_bytes, budget=RingBudget(1 << 30))
    for record in [entry(0, 10), entry(1, 20), entry(0, 11),
                   entry(1, 21), entry(1, 22), entry(0, 12)]:  # fmt: skip
        ring.append(record)
    return ring


def test_count_bound_evicts_oldest_and_moves_the_start() -> None:
    ring = filled(max_records=4)
    assert len(ring) == 4
    assert ring.start == [11, 21]


def test_byte_bound() -> None:
    ring = filled(max_records=100, max_bytes=10)  # each frame is 4 or 5 bytes
    assert ring.size_bytes <= 10
    assert len(ring) == 2
    assert ring.start == [12, 22]


def test_coverage() -> None:
    ring = filled(max_records=4)
    assert ring.uncovered((11, 21)) == []
    assert ring.uncovered((13, 23)) == []
    assert ring.uncovered((10, 22)) == [(0, 10, 11)]
    assert ring.uncovered((0,)) == [(0, 0, 11), (1, 0, 21)]


def test_entries_are_numbered_and_read_from_a_number() -> None:
    ring = filled(max_records=4)  # six appended, numbers 0 to 5; 0 and 1 evicted
    assert (ring.first_seq, ring.next_seq) == (2, 6)
    assert [(e.partition, e.offset) for e in ring.since(3)] == [(1, 21), (1, 22), (0, 12)]
    assert list(ring.since(6)) == []
    assert [e.offset for e in ring.newest(2)] == [12, 22]


def test_numbers_survive_the_compaction_of_evicted_entries() -> None:
    ring = RingBuffer([0], max_records=3, max_bytes=1 << 20, budget=RingBudget(1 << 30))
    for offset in range(5000):  # several compactions of the list
        ring.append(entry(0, offset))
    assert (ring.first_seq, ring.next_seq) == (4997, 5000)
    assert [e.offset for e in ring.since(4998)] == [4998, 4999]
    assert [e.offset for e in ring.newest(5)] == [4999, 4998, 4997]
    assert ring.start == [4997]


def test_zero_capacity_ring_covers_only_the_live_position() -> None:
    ring = RingBuffer([5], max_records=0, max_bytes=0, budget=RingBudget(1 << 30))
    ring.append(entry(0, 5))
    assert len(ring) == 0
    assert ring.first_seq == ring.next_seq == 1
    assert ring.uncovered((6,)) == []
    assert ring.uncovered((5,)) == [(0, 5, 6)]


def test_partitions_added_later_start_where_told() -> None:
    ring = filled()
    ring.add_partitions([0])
    assert ring.uncovered((11, 21)) == []  # the cursor predates partition 2: from its beginning, 0


def test_span_is_newest_minus_oldest_timestamp_of_what_is_kept() -> None:
    ring = RingBuffer([0, 0], max_records=2, max_bytes=1000, budget=RingBudget(1 << 30))
    assert ring.span_ms == 0
    ring.append(entry(0, 0, timestamp_ms=1000))
    assert ring.span_ms == 0
    ring.append(entry(1, 0, timestamp_ms=1500))
    assert ring.span_ms == 500
    ring.append(entry(0, 1, timestamp_ms=4000))  # evicts the record of 1000
    assert ring.span_ms == 2500
    ring.append(entry(1, 1, timestamp_ms=3000))  # a producer whose clock is behind
    assert ring.span_ms == 0


def test_rings_share_one_budget_and_the_least_recently_watched_gives_up_first() -> None:
    budget = RingBudget(1 << 30)
    old, recent, watched = (RingBuffer([0], max_records=100, max_bytes=1 << 20, budget=budget) for _ in range(3))
    budget.watched(watched, now=True)
    budget.watched(old, now=False)  # its last stream ended first
    budget.watched(recent, now=False)
    for ring in (watched, old, recent):
        for offset in range(3):
            ring.append(entry(0, offset))
    per_entry = entry_memory(entry(0, 0))
    assert budget.used == 9 * per_entry == sum(ring.memory_bytes for ring in (old, recent, watched))
    budget.max_bytes = 8 * per_entry
    watched.append(entry(0, 3))  # two over: the ring watched least recently gives up its two oldest
    assert (len(old), len(recent), len(watched)) == (1, 3, 4)
    assert old.start == [2]
    budget.max_bytes = 4 * per_entry
    recent.append(entry(0, 3))  # then the other unwatched ones, the watched ones last
    assert (len(old), len(recent), len(watched)) == (0, 0, 4)
    assert budget.used == 4 * per_entry
    budget.leave(watched)
    assert budget.used == 0


def test_the_budget_counts_the_memory_an_entry_really_keeps() -> None:
    """What the ring accounts for is what tracemalloc sees the entries keep, within 15 %."""
    budget = RingBudget(1 << 40)
    ring = RingBuffer([0] * 3, max_records=10_000, max_bytes=1 << 30, budget=budget)
    ids = cursors.CursorWriter([10**6] * 3)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(5000):
        partition, offset = n % 3, 10**6 + n
        value = os.urandom(100).hex().encode()
        record = ConsumerRecord(topic="t", partition=partition, offset=offset, timestamp=1767225600000 + n,
                                timestamp_type=0, key=str(n).encode(), value=value, checksum=None,
                                serialized_key_size=-1, serialized_value_size=len(value),
                                headers=((f"h{n % 2}", b"x" * 5),))  # fmt: skip
        frame = record_event(record, id=ids.advance(partition, offset + 1), type_header="event-type")
        ring.append(Entry(partition, offset, frame, record.timestamp, record))
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert 0.85 < budget.used / kept < 1.15, (budget.used, kept)
