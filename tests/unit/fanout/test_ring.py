from __future__ import annotations

from bridge.fanout.ring import Entry, RingBudget, RingBuffer
from tests.support.records import Record


def entry(partition: int, offset: int, position: tuple[int, ...], timestamp_ms: int = 0) -> Entry:
    frame = f"{partition}:{offset}".encode()
    return Entry(partition, offset, position, frame, timestamp_ms, Record(partition, offset, frame))


def filled(max_records: int = 4, max_bytes: int = 1000) -> RingBuffer:
    """Partitions 0 and 1 start at 10 and 20; six records interleaved."""
    ring = RingBuffer([10, 20], max_records=max_records, max_bytes=max_bytes, budget=RingBudget(1 << 30))
    for record in [entry(0, 10, (11, 20)), entry(1, 20, (11, 21)), entry(0, 11, (12, 21)),
                   entry(1, 21, (12, 22)), entry(1, 22, (12, 23)), entry(0, 12, (13, 23))]:  # fmt: skip
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


def test_replay_selects_per_partition_offsets() -> None:
    ring = filled(max_records=6)
    replayed = [(e.partition, e.offset) for e in ring.replay((12, 21))]
    assert replayed == [(1, 21), (1, 22), (0, 12)]
    assert ring.replay((13, 23)) == []


def test_zero_capacity_ring_covers_only_the_live_position() -> None:
    ring = RingBuffer([5], max_records=0, max_bytes=0, budget=RingBudget(1 << 30))
    ring.append(entry(0, 5, (6,)))
    assert len(ring) == 0
    assert ring.uncovered((6,)) == []
    assert ring.uncovered((5,)) == [(0, 5, 6)]


def test_partitions_added_later_start_where_told() -> None:
    ring = filled()
    ring.add_partitions([0])
    assert ring.uncovered((11, 21)) == []  # the cursor predates partition 2: from its beginning, 0


def test_span_is_newest_minus_oldest_timestamp_of_what_is_kept() -> None:
    ring = RingBuffer([0, 0], max_records=2, max_bytes=1000, budget=RingBudget(1 << 30))
    assert ring.span_ms == 0
    ring.append(entry(0, 0, (1, 0), timestamp_ms=1000))
    assert ring.span_ms == 0
    ring.append(entry(1, 0, (1, 1), timestamp_ms=1500))
    assert ring.span_ms == 500
    ring.append(entry(0, 1, (2, 1), timestamp_ms=4000))  # evicts the record of 1000
    assert ring.span_ms == 2500
    ring.append(entry(1, 1, (2, 2), timestamp_ms=3000))  # a producer whose clock is behind
    assert ring.span_ms == 0
