"""In-process cost of one published batch, per design, in the same run.

No broker and no sockets: a Hub with 1,000 subscribers whose outboxes are
emptied after each batch, and ``Channel.publish`` timed over ``--batches``
batches of ``--records`` records (JSON values, as a producer of events
would send). Scenarios:

- ``one topic``: 1,000 subscribers of one topic, unfiltered (the baseline);
- ``3 topics, shared ids``: 1,000 subscribers of one 3-topic view; ids that
  cover the three topics are built once per record for the view (the design
  in bridge/fanout/views.py);
- ``3 topics, ids per subscriber``: the rejected design, each subscriber's
  ids rewritten from the shared frames at hand-over (what a per-stream id
  rewrite at write time would cost);
- ``10 filters``: 1,000 subscribers over 10 distinct filters (100 each) on
  one topic, each filter evaluated once per record, values parsed once.

Scenarios take turns batch by batch; prints the median µs per batch and per
record, and the ratio to the baseline.

Run from the repository root::

    python -m bench.publish_cost [--records 100] [--batches 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from bridge.fanout.batch import Batch
from bridge.fanout.channel import Channel
from bridge.fanout.hub import Hub
from bridge.fanout.outbox import Subscriber
from bridge.fanout.views import Subscription, View
from bridge.wire.filters import parse_filter

SUBSCRIBERS = 1000
TYPES = ("alert", "info", "debug", "order", "audit")
FILTERS = [
    [("where", f"type=={kind}")] for kind in TYPES
] + [[("key", f"k{n}")] for n in range(3)] + [[("where", "level==3")], [("header.region", "eu")]]  # fmt: skip


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int = 0


def batch(start: int, count: int) -> list[Record]:
    return [
        Record(n % 3, n // 3, f"k{n % 10}".encode(),
               orjson.dumps({"type": TYPES[n % 5], "level": n % 4, "n": n, "pad": "x" * 60}),
               (("region", (b"eu", b"us")[n % 2]),))
        for n in range(start, start + count)
    ]  # fmt: skip


class PerSubscriberIds(View):
    """The rejected design: the channel's frames shared, each subscriber's ids rewritten at hand-over."""

    def deliver(self, batch: Batch) -> None:
        selected = batch.selected(self.filter)
        index = self.subscription.topics.index(batch.topic)
        for subscriber in tuple(self.subscribers):
            prefix = b"".join(b"%s~" % ".".join(map(str, c.position)).encode() for c in self.channels[:index])
            suffix = b"".join(b"~%s" % ".".join(map(str, c.position)).encode() for c in self.channels[index + 1 :])
            subscriber.push(b"".join(b"id: " + prefix + batch.own_id(i) + suffix + b"\n" + batch.body(
                self.subscription.format, i) for i in selected))  # fmt: skip


def setup(subscriptions: Sequence[Subscription], view_type: type[View] = View) -> tuple[Channel, list[Subscriber]]:
    hub = Hub(ring_records=10_000, ring_bytes=1 << 30, ring_total_bytes=1 << 30, type_header=None)
    for topic in ("a", "b", "c"):
        hub.open_channel(topic, (0, 0, 0))
    subscribers = []
    for n in range(SUBSCRIBERS):
        subscription = subscriptions[n % len(subscriptions)]
        view = hub.views.get(subscription) or view_type(
            subscription, [hub.channels[t] for t in subscription.topics], hub.views
        )
        subscriber = Subscriber(1 << 40)
        view.subscribe(subscriber, None)
        subscribers.append(subscriber)
    return hub.channels["a"], subscribers


async def run(records: int, batches: int) -> None:
    three = Subscription.of(["a", "b", "c"])
    scenarios = {
        "one topic": setup([Subscription.of(["a"])]),
        "3 topics, shared ids": setup([three]),
        "3 topics, ids per subscriber": setup([three], PerSubscriberIds),
        "10 filters": setup([Subscription.of(["a"], parse_filter(query)) for query in FILTERS]),
    }
    # Batch by batch in turn, so that whatever else the machine does weighs on every scenario alike.
    spent: dict[str, list[float]] = {name: [] for name in scenarios}
    for number in range(batches):
        for name, (channel, subscribers) in scenarios.items():
            published = batch(number * records, records)
            started = time.perf_counter()
            channel.publish(published)
            spent[name].append((time.perf_counter() - started) * 1e6)
            for subscriber in subscribers:  # empty the outboxes, untimed
                await subscriber.take(0)
    baseline = statistics.median(spent["one topic"])
    print(f"{SUBSCRIBERS} subscribers, batches of {records} records, {batches} batches each, in turn\n")
    print(f"{'scenario':<30} {'median µs/batch':>16} {'µs/record':>10} {'x baseline':>11}")
    for name, times in spent.items():
        micros = statistics.median(times)
        print(f"{name:<30} {micros:>16.0f} {micros / records:>10.1f} {micros / baseline:>11.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100, help="records per batch (default 100)")
    parser.add_argument("--batches", type=int, default=200, help="batches per scenario (default 200)")
    arguments = parser.parse_args(argv)
    asyncio.run(run(arguments.records, arguments.batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
