"""The recent past of one topic, as encoded events, for exact resume.

The ring keeps the last records of a topic (bounded by a count and by bytes
of encoded events) together with their encoded events. It covers a cursor when, for every
partition, no record at or above the cursor's offset has been evicted: only
then can a replay from the ring be exact.
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
    position: tuple[int, ...]  # the channel's cursor after this record
    frame: bytes  # the encoded event, its id line first
    timestamp_ms: int  # the record's Kafka timestamp
    record: KafkaRecord  # for streams with a filter or another format, which encode their own events


class RingBuffer:
    def __init__(self, start: Sequence[int], *, max_records: int, max_bytes: int) -> None:
        self._entries: deque[Entry] = deque()
        self._size = 0
        self.max_records = max_records
        self.max_bytes = max_bytes
        # per partition: the lowest offset the ring can replay from
        self.start = list(start)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._size

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
        while self._entries and (len(self._entries) > self.max_records or self._size > self.max_bytes):
            evicted = self._entries.popleft()
            self._size -= len(evicted.frame)
            self.start[evicted.partition] = evicted.offset + 1

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
