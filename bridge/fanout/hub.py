"""The channels of the topics a process reads (channel.py), and the views over them (views.py).

A topic has a channel only while it is read: the Kafka source opens it when
the topic's first stream comes and drops it a linger period after the last
one ended (kafka/source.py). Its counters outlive the channel, so the
metrics' counters never go backwards when a topic is read again.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.fanout.channel import Channel, Listener, TopicStats
from bridge.fanout.latency import DeliveryLatency
from bridge.fanout.outbox import CloseReason, Subscriber
from bridge.fanout.ring import RingBudget
from bridge.fanout.views import AHEAD_WAIT_SECONDS, Subscription, View


class Hub:
    """The channels of the topics read now, the views over them, and the memory their rings share."""

    def __init__(self, *, ring_records: int, ring_bytes: int, ring_total_bytes: int, type_header: str | None,
                 ahead_wait: float = AHEAD_WAIT_SECONDS) -> None:  # fmt: skip
        self.channels: dict[str, Channel] = {}
        self.views: dict[Subscription, View] = {}
        self.stats: dict[str, TopicStats] = {}  # every topic ever read
        self.budget = RingBudget(ring_total_bytes)
        self.latency = DeliveryLatency()  # of the live records, fetched to written
        self._ahead_wait = ahead_wait
        self._ring_records = ring_records
        self._ring_bytes = ring_bytes
        self._type_header = type_header

    def open_channel(self, topic: str, start: Sequence[int], tag: str = "") -> Channel:
        stats = self.stats.setdefault(topic, TopicStats())
        channel = Channel(topic, start, ring_records=self._ring_records, ring_bytes=self._ring_bytes,
                          type_header=self._type_header, budget=self.budget, stats=stats, tag=tag,
                          latency=self.latency)  # fmt: skip
        self.channels[topic] = channel
        return channel

    def drop_channel(self, topic: str, reason: CloseReason = CloseReason.SHUTDOWN) -> Channel | None:
        """Forget ``topic``'s channel and all it holds: its position, its ring
        (its memory goes back to the budget) and the views over it, whose
        streams end with ``reason``. Streams still catching up over it are the
        catch-ups' to end (kafka/catchup.py)."""
        channel = self.channels.pop(topic, None)
        if channel is None:
            return None
        for view in tuple(channel.views):
            view.close_all(reason)
        for subscription, view in tuple(self.views.items()):
            if channel in view.channels:  # a view whose streams still catch up: a new stream gets a new one
                del self.views[subscription]
        self.budget.leave(channel.ring)
        return channel

    def delete_topic(self, topic: str) -> None:
        """The topic is gone from Kafka: its channel is dropped and every stream
        over it ends with a ``deleted`` event (stream.py). Streams still
        catching up see ``channel.deleted`` and end the same way."""
        self.channels[topic].deleted = True
        self.drop_channel(topic, CloseReason.TOPIC_DELETED)

    def mark_watched(self, topic: str, now: bool) -> None:
        """A stream of ``topic`` opened or ended (``now``: some stream still watches it): the ring
        of the topic watched least recently gives up its entries first."""
        channel = self.channels.get(topic)
        if channel is not None:
            self.budget.watched(channel.ring, now)

    def view(self, subscription: Subscription) -> View:
        """The view streams of ``subscription`` share; its topics must be read."""
        view = self.views.get(subscription)
        if view is None:
            # Registered at once, so that streams still catching up share it too;
            # it leaves when its last stream ends (View.unsubscribe).
            channels = [self.channels[topic] for topic in subscription.topics]
            view = self.views[subscription] = View(subscription, channels, self.views, self._ahead_wait)
        return view

    def all_views(self) -> list[Listener]:
        """Each view once: registered ones, and those still on a channel (a dict keeps them in order, unique)."""
        views: dict[Listener, None] = dict.fromkeys(self.views.values())
        views.update(dict.fromkeys(view for channel in self.channels.values() for view in channel.views))
        return list(views)

    def open_streams(self) -> list[Subscriber]:
        """Every subscriber of every view: live, or waiting for the channels to reach its cursor."""
        return [subscriber for view in self.all_views() for subscriber in view.open_streams()]

    def close_all(self, reason: CloseReason) -> None:
        for view in self.all_views():
            view.close_all(reason)
