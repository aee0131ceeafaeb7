"""Telling a stalled Kafka consumer from a quiet one.

aiokafka can stop fetching while its connection looks alive: after a
full-cluster restart, or on a connection whose packets silently go nowhere (a
lost NAT or firewall entry), where it waits out its 40 s request timeout, or
longer. Silence alone proves nothing (a topic may be quiet), so the watchdog
compares the consumer's positions with the log end offsets the broker reports
over a connection of its own: records exist past the position, and the
positions did not move for ``stall_seconds``, is a stall.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiokafka import TopicPartition


class StallDetector:
    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.reset()

    def reset(self) -> None:
        """Forget what was seen: a new consumer gets the whole bound."""
        self._positions: Mapping[TopicPartition, int] = {}
        self._moving_at: float | None = None  # when the positions last moved, or were level with the ends

    def stalled(self, positions: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int], now: float) -> bool:
        """One look: the consumer's fetch positions and the broker's end offsets, at ``now``."""
        behind = any(end > positions.get(tp, end) for tp, end in ends.items())
        if not behind or self._moving_at is None or positions != self._positions:
            self._moving_at = now
        self._positions = dict(positions)
        return now - self._moving_at >= self.stall_seconds
