"""Which broker leads each served partition, as the metadata watcher sees it.

A leader move (a broker lost, shut down or back) is logged once, as one line
per move naming the brokers and the partitions, not as the client's repeated
connection errors; partitions left without a leader are counted for /readyz.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence

logger = logging.getLogger("bridge.source")

NO_LEADER = -1  # what Kafka's metadata says while a partition has none


class Leaders:
    def __init__(self) -> None:
        self._leaders: dict[tuple[str, int], int] = {}  # (topic, partition) → broker id

    @property
    def without_leader(self) -> int:
        return sum(leader == NO_LEADER for leader in self._leaders.values())

    def observe(self, topics: Mapping[str, Sequence[int]]) -> None:
        """Take in the leader of each partition of each topic, from a metadata answer."""
        moves: dict[tuple[int, int], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for topic, leaders in topics.items():
            for partition, now in enumerate(leaders):
                before = self._leaders.get((topic, partition))
                self._leaders[topic, partition] = now
                if before is not None and before != now:
                    moves[before, now][topic].append(partition)
        for (before, now), partitions in moves.items():
            named = "; ".join(f"{topic} partition(s) {', '.join(map(str, sorted(numbers)))}"
                              for topic, numbers in sorted(partitions.items()))  # fmt: skip
            if now == NO_LEADER:
                logger.warning("Kafka leader lost: broker %d led %s, no broker leads them now", before, named)
            elif before == NO_LEADER:
                logger.info("Kafka leader back: broker %d leads %s", now, named)
            else:
                logger.info("Kafka leader moved from broker %d to broker %d: %s", before, now, named)
