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

Then the partition count (``--partitions``): 1,000 subscribers of one topic
of 3, 64 and 256 partitions whose offsets are near 10^9 and within 10^5 of
each other (a balanced topic that has lived a while), records of the batch
going round the partitions (no two in a row of one partition, the worst
case for ids built around a run), with the ids the bridge writes (compact,
kept encoded by a CursorWriter) and with the readable ids of earlier
versions, re-encoded whole for every record (the baseline), all taking turns
batch by batch. Prints per-record µs of publishing and of replaying the
ring to a resuming client, id and event bytes, and the ratios to 3
partitions.

Run from the repository root::

    python -m bench.publish_cost [--records 100] [--batches 200] [--partitions 3,64,256]
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
from bridge.wire import cursor as cursors
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


def batch(start: int, count: int, partitions: int = 3, offsets: Sequence[int] | None = None) -> list[Record]:
    """Records ``start`` to ``start + count``, round the partitions, each at its partition's
    offset in ``offsets`` (default 0) plus its turn."""
    return [
        Record(n % partitions, (offsets[n % partitions] if offsets else 0) + n // partitions, f"k{n % 10}".encode(),
               orjson.dumps({"type": TYPES[n % 5], "level": n % 4, "n": n, "pad": "x" * 60}),
               (("region", (b"eu", b"us")[n % 2]),))
        for n in range(start, start + count)
    ]  # fmt: skip


class ReadableIds(cursors.CursorWriter):
    """The baseline: ids of earlier versions, every partition's offset in decimal, the
    whole cursor encoded for every record (and the position copied, as ring entries held it)."""

    def advance(self, partition: int, offset: int) -> str:
        self.offsets[partition] = offset
        self.text = ".".join(map(str, tuple(self.offsets))) + self._suffix
        return self.text


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


def balanced(partitions: int) -> list[int]:
    """Offsets near 10^9, within 10^5 of each other, as a topic that has lived a while."""
    return [10**9 + (partition * 7919) % 10**5 for partition in range(partitions)]


def wide(partitions: int, ids: type[cursors.CursorWriter], records: int) -> tuple[Channel, View, list[Subscriber]]:
    hub = Hub(ring_records=records, ring_bytes=1 << 30, ring_total_bytes=1 << 30, type_header=None)
    channel = hub.open_channel("a", balanced(partitions), tag="Zk3q")
    channel.ids = ids(balanced(partitions), "Zk3q")  # before any view holds it
    view = View(Subscription.of(["a"]), [channel], hub.views)
    subscribers = [Subscriber(1 << 40) for _ in range(SUBSCRIBERS)]
    for subscriber in subscribers:
        view.subscribe(subscriber, None)
    return channel, view, subscribers


async def run_partitions(records: int, batches: int, counts: Sequence[int]) -> None:
    designs: dict[str, type[cursors.CursorWriter]] = {"compact, kept encoded": cursors.CursorWriter,
                                                      "readable, encoded whole": ReadableIds}  # fmt: skip
    scenarios = {(design, count): wide(count, ids, records * batches)  # a ring that keeps every record
                 for design, ids in designs.items() for count in counts}  # fmt: skip
    spent: dict[tuple[str, int], list[float]] = {key: [] for key in scenarios}
    for number in range(batches):
        for key, (channel, _, subscribers) in scenarios.items():
            published = batch(number * records, records, key[1], balanced(key[1]))
            started = time.perf_counter()
            channel.publish(published)
            spent[key].append((time.perf_counter() - started) * 1e6 / records)
            for subscriber in subscribers:
                await subscriber.take(0)
    replay: dict[tuple[str, int], float] = {}
    for key, (channel, view, _) in scenarios.items():  # a client resuming from the ring's first record
        if designs[key[0]] is not cursors.CursorWriter:
            continue  # replay writes the bridge's ids whatever the channel's: the baseline's would not compare
        resuming = Subscriber(1 << 40)
        started = time.perf_counter()
        view.subscribe(resuming, (tuple(channel.ring.start),))
        replay[key] = (time.perf_counter() - started) * 1e6 / len(channel.ring)
        view.unsubscribe(resuming)
    print(
        f"\n{SUBSCRIBERS} subscribers of one topic, offsets near 10^9 within 10^5, batches of {records} records "
        f"round the partitions, {batches} batches each, in turn; replay: one client, all {records * batches} again\n"
    )
    ratio = f"x {counts[0]} part."
    print(f"{'ids':<24} {'partitions':>10} {'µs/record':>10} {ratio:>10} {'replay µs/rec':>14} "
          f"{ratio:>10} {'id bytes':>9} {'B/partition':>12} {'event bytes':>12}")  # fmt: skip
    for design in designs:
        base = statistics.median(spent[design, counts[0]])
        for count in counts:
            frame = scenarios[design, count][0].ring.newest(1)[0].frame
            id_bytes = len(frame.split(b"\n", 1)[0]) - len("id: ")
            micros = statistics.median(spent[design, count])
            replayed = (f"{replay[design, count]:>14.2f} {replay[design, count] / replay[design, counts[0]]:>10.2f}"
                        if (design, count) in replay else f"{'-':>14} {'-':>10}")  # fmt: skip
            print(f"{design:<24} {count:>10} {micros:>10.2f} {micros / base:>10.2f} {replayed} {id_bytes:>9} "
                  f"{id_bytes / count:>12.1f} {len(frame):>12}")  # fmt: skip
    for count in counts:
        new, old = (statistics.median(spent[design, count]) for design in designs)
        print(f"{count} partitions: compact ids cost {new / old:.2f}x the readable ones per record")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100, help="records per batch (default 100)")
    parser.add_argument("--batches", type=int, default=200, help="batches per scenario (default 200)")
    parser.add_argument("--partitions", default="3,64,256", help="partition counts to compare (default 3,64,256)")
    arguments = parser.parse_args(argv)
    asyncio.run(run(arguments.records, arguments.batches))
    counts = [int(count) for count in arguments.partitions.split(",") if count]
    asyncio.run(run_partitions(arguments.records, arguments.batches, counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
