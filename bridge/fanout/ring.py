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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import islice
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


class RingBuffer:
    def __init__(self, start: Sequence[int], *, max_records: int, max_bytes: int, budget: RingBudget) -> None:
        self._entries: deque[Entry] = deque()
        self._size = 0
        self._memory = 0
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._budget = budget
        budget.watched(self, now=False)
        # per partition: the lowest offset the ring can replay from
        self.start = list(start)

    def __len__(self) -> int:
        return len(self._entries)

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
        if not self._entries:
            return 0
        return max(0, self._entries[-1].timestamp_ms - self._entries[0].timestamp_ms)

    def add_partitions(self, starts: Sequence[int]) -> None:
        self.start.extend(starts)

    def append(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._size += len(entry.frame)
        memory = entry_memory(entry)
        self._memory += memory
        self._budget.used += memory
        while len(self._entries) > self.max_records or self._size > self.max_bytes:
            self.evict_oldest()
        if self._budget.used > self._budget.max_bytes:
            self._budget.enforce()

    def evict_oldest(self) -> bool:
        """Give up the oldest entry; False if there was none."""
        if not self._entries:
            return False
        evicted = self._entries.popleft()
        self._size -= len(evicted.frame)
        memory = entry_memory(evicted)
        self._memory -= memory
        self._budget.used -= memory
        self.start[evicted.partition] = evicted.offset + 1
        return True

    def newest(self, count: int) -> list[Entry]:
        """The last ``count`` entries, newest first."""
        return list(islice(reversed(self._entries), count))

    def uncovered(self, cursor: Sequence[int]) -> list[tuple[int, int, int]]:
        """(partition, requested, first replayable) for each partition whose
        records from the cursor on are no longer all in the ring."""
        return [
            (partition, offset_for(cursor, partition), start)
            for partition, start in enumerate(self.start)
            if offset_for(cursor, partition) < start
        ]

    def replay(self, cursor: Sequence[int]) -> list[Entry]:
        """The entries a client at ``cursor`` has not seen, oldest first."""
        return [entry for entry in self._entries if entry.offset >= offset_for(cursor, entry.partition)]
