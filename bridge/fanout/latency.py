"""How late live records are at each stage of the live path, from their Kafka timestamp.

Three stages, each measured from the record's timestamp (its producer's
CreateTime, or the broker's LogAppendTime), so each includes the ones before:

- ``fetched``: the reader's ``getmany`` handed it over;
- ``published``: its channel published it (encoded, in the ring, in every
  live subscriber's outbox);
- ``written``: every live subscriber that was not held back by its own
  socket (a full TCP window) has it in its transport: most were written to
  from the publish itself (fanout/outbox.py), the rest once the event loop
  has run the connections the batch woke. Measured by a callback queued
  behind those wake-ups: the loop runs its ready callbacks in order.

Counted per batch and stage, never per subscriber, in fixed buckets of plain
ints; metrics.py turns them into a Prometheus histogram at scrape time. A
batch of more than ``SAMPLED`` records is sampled evenly, each sampled record
counting for itself and the records up to the next one sampled: counts stay
exact, the ages within a large batch are estimated, and a batch costs at most
``SAMPLED`` lookups per stage (a lookup is a few hundred ns; every record of a
10,000-record batch would be milliseconds of the event loop).
A producer whose clock runs ahead counts as 0 late (the first bucket); a
record without a timestamp (-1, the oldest message format) is not counted.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

STAGES = ("fetched", "published", "written")
# Upper bounds, seconds: fine below 50 ms, where a healthy bridge's records fall.
BOUNDS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_BOUNDS_MS = tuple(bound * 1000 for bound in BOUNDS)
SAMPLED = 32  # records of a batch looked at per stage, at most


class Timestamped(Protocol):
    @property
    def timestamp(self) -> int: ...  # ms since the epoch


class StageCounts:
    __slots__ = ("buckets", "count", "sum_ms")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BOUNDS) + 1)  # the last: past every bound (+Inf)
        self.count = 0
        self.sum_ms = 0.0


class DeliveryLatency:
    def __init__(self) -> None:
        self.stages = {stage: StageCounts() for stage in STAGES}

    def observe(self, stage: str, records: Sequence[Timestamped], now: float | None = None) -> None:
        """``records`` reached ``stage`` at ``now`` (epoch seconds; default: now)."""
        if not records:
            return
        now_ms = (time.time() if now is None else now) * 1000
        counts = self.stages[stage]
        buckets, bounds = counts.buckets, _BOUNDS_MS
        size = len(records)
        step = -(-size // SAMPLED)  # every record while the batch is small
        total, counted = 0.0, 0
        for start in range(0, size, step):
            timestamp = records[start].timestamp
            if timestamp < 0:  # a record of the oldest message format has none: no age to count
                continue
            weight = min(step, size - start)  # the records up to the next one sampled
            # A producer clock ahead of ours is 0 late: a negative age would make the sum go down,
            # which Prometheus reads as a counter reset.
            age = max(0.0, now_ms - timestamp)
            buckets[bisect_left(bounds, age)] += weight
            total += age * weight
            counted += weight
        counts.count += counted
        counts.sum_ms += total

    def published(self, records: Sequence[Timestamped]) -> None:
        """``records`` were published just now: they are written once the connections they woke have run."""
        if records:
            self.observe("published", records)
            asyncio.get_running_loop().call_soon(self.observe, "written", records)
