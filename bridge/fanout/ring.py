"""The recent past of one topic, as encoded events, for exact resume.

The ring keeps the last records of a topic (bounded by a count and by bytes
of encoded events) together with their encoded events. It covers a cursor when, for every
partition, no record at or above the cursor's offset has been evicted: only
then can a replay from the ring be exact.

All rings of a process share one budget of memory (``--ring-total-bytes``),
counted as what an entry really holds: its event, its record and the objects
around them. A record that would pass the budget makes the rings of the
topics watched least recently give up their oldest entries first; a ring that
no longer covers a cursor sends its client to Kafka, exact as ever.

Entries are numbered in the order they arrive (``first_seq`` is the oldest
kept, ``next_seq`` the next to come): a subscriber behind the live path holds
a number, not records, and is fed from it at its own pace (behind.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from bridge.wire.cursor import offset_for
from bridge.wire.events import KafkaRecord


class Entry(NamedTuple):
    partition: int
    offset: int
    frame: bytes  # the encoded event, its id line first (the channel's cursor after this record)
    timestamp_ms: int  # the record's Kafka timestamp
    record: KafkaRecord  # for streams with a filter or another format, which encode their own events


# What an entry holds besides the bytes of its event, value, key and headers:
# the Entry, the ConsumerRecord, their ints and the bytes objects' headers
# (measured with tracemalloc, see tests/unit/fanout/test_ring.py), and each
# header's tuple, str and bytes.
ENTRY_BYTES = 512
HEADER_BYTES = 150


def entry_memory(entry: Entry) -> int:
    """The bytes ``entry`` keeps alive while it is in a ring."""
    record = entry.record
    headers = record.headers or ()
    return (
        ENTRY_BYTES + len(entry.frame) + len(record.value or b"") + len(record.key or b"")
        + sum(HEADER_BYTES + len(name) + len(value) for name, value in headers)
    )  # fmt: skip


class RingBudget:
    """The memory every ring of a process shares, and which ring gives up entries first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        # least recently watched first; the value: whether a stream watches it now
        self._rings: dict[RingBuffer, bool] = {}

    def watched(self, ring: RingBuffer, now: bool) -> None:
        """A stream of ``ring``'s topic opened or ended; ``now``: some stream watches it still."""
        self._rings.pop(ring, None)
        self._rings[ring] = now

    def leave(self, ring: RingBuffer) -> None:
        self._rings.pop(ring, None)
        self.used -= ring.memory_bytes

    def enforce(self) -> None:
        """Evict oldest entries until under the budget: from the rings nobody
        watches now, least recently watched first, then from the watched ones."""
        for watched_now in (False, True):
            for ring, watched in self._rings.items():  # evicting changes no ring's place
                if watched is not watched_now:
                    continue
                while self.used > self.max_bytes and ring.evict_oldest():
                    pass
                if self.used <= self.max_bytes:
                    return


# Evicted entries are dropped from the front of the list in one go once this many have piled up
# (and they are at least half of it): amortised O(1) per eviction, O(1) access by number.
COMPACT_AFTER = 1024


class RingBuffer:
    def __init__(self, start: Sequence[int], *, max_records: int, max_bytes: int, budget: RingBudget) -> None:
        # A list read from ``_head`` (None before it, evicted): a deque would make reading from a number O(n).
        self._entries: list[Entry | None] = []
        self._head = 0
        self._base_seq = 0  # the number of self._entries[0]
        self._size = 0
        self._memory = 0
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._budget = budget
        budget.watched(self, now=False)
        # per partition: the lowest offset the ring can replay from
        self.start = list(start)

    def __len__(self) -> int:
        return len(self._entries) - self._head

    @property
    def first_seq(self) -> int:
        """The number of the oldest entry kept (``next_seq`` when there is none)."""
        return self._base_seq + self._head

    @property
    def next_seq(self) -> int:
        """The number the next entry appended gets."""
        return self._base_seq + len(self._entries)

    def since(self, seq: int) -> Iterator[Entry]:
        """The entries from number ``seq`` on, oldest first (``seq`` at least ``first_seq``).
        Read it before the ring changes: it walks the ring as it is."""
        entries = self._entries
        for index in range(seq - self._base_seq, len(entries)):
            yield self._at(index)

    def _at(self, index: int) -> Entry:
        entry = self._entries[index]
        assert entry is not None, "read before first_seq"
        return entry

    @property
    def size_bytes(self) -> int:
        """Bytes of encoded events (the per-topic bound)."""
        return self._size

    @property
    def memory_bytes(self) -> int:
        """Bytes of memory the entries keep alive (what the shared budget counts)."""
        return self._memory

    @property
    def span_ms(self) -> int:
        """Newest minus oldest record timestamp: about how long a client can
        be away and still resume from memory. Records arrive roughly in time
        order, so the ends of the ring stand for both (reading them costs
        nothing); producers' clocks may disagree, hence never below zero."""
        if not len(self):
            return 0
        return max(0, self._at(-1).timestamp_ms - self._at(self._head).timestamp_ms)

    def add_partitions(self, starts: Sequence[int]) -> None:
        self.start.extend(starts)

    def append(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._size += len(entry.frame)
        memory = entry_memory(entry)
        self._memory += memory
        self._budget.used += memory
        while len(self) > self.max_records or self._size > self.max_bytes:
            self.evict_oldest()
        if self._budget.used > self._budget.max_bytes:
            self._budget.enforce()

    def evict_oldest(self) -> bool:
        """Give up the oldest entry; False if there was none."""
        if not len(self):
            return False
        evicted = self._at(self._head)
        self._entries[self._head] = None
        self._head += 1
        if self._head >= COMPACT_AFTER and 2 * self._head >= len(self._entries):
            del self._entries[: self._head]
            self._base_seq += self._head
            self._head = 0
        self._size -= len(evicted.frame)
        memory = entry_memory(evicted)
        self._memory -= memory
        self._budget.used -= memory
        self.start[evicted.partition] = evicted.offset + 1
        return True

    def newest(self, count: int) -> list[Entry]:
        """The last ``count`` entries, newest first."""
        last = len(self._entries) - 1
        return [self._at(index) for index in range(last, max(self._head, last + 1 - count) - 1, -1)]

    def uncovered(self, cursor: Sequence[int]) -> list[tuple[int, int, int]]:
        """(partition, requested, first replayable) for each partition whose
        records from the cursor on are no longer all in the ring."""
        return [
            (partition, offset_for(cursor, partition), start)
            for partition, start in enumerate(self.start)
            if offset_for(cursor, partition) < start
        ]
