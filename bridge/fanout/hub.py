"""The channels of every served topic (channel.py), and the views over them (views.py)."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.fanout.channel import Channel, Listener
from bridge.fanout.outbox import CloseReason, Subscriber
from bridge.fanout.views import AHEAD_WAIT_SECONDS, Subscription, View


class Hub:
    """The channels of every served topic, and the views over them."""

    def __init__(self, *, ring_records: int, ring_bytes: int, type_header: str | None,
                 ahead_wait: float = AHEAD_WAIT_SECONDS) -> None:  # fmt: skip
        self.channels: dict[str, Channel] = {}
        self.views: dict[Subscription, View] = {}
        self._ahead_wait = ahead_wait
        self._ring_records = ring_records
        self._ring_bytes = ring_bytes
        self._type_header = type_header

    def open_channel(self, topic: str, start: Sequence[int], tag: str = "") -> Channel:
        channel = Channel(topic, start, ring_records=self._ring_records, ring_bytes=self._ring_bytes,
                          type_header=self._type_header, tag=tag)  # fmt: skip
        self.channels[topic] = channel
        return channel

    def delete_topic(self, topic: str) -> None:
        """The topic is gone from Kafka: its channel and ring are dropped and
        every stream over it ends with a ``deleted`` event (stream.py). Streams
        still catching up see ``channel.deleted`` and end the same way."""
        channel = self.channels.pop(topic)
        channel.deleted = True
        for view in tuple(channel.views):
            view.close_all(CloseReason.TOPIC_DELETED)
        for subscription, view in tuple(self.views.items()):
            if channel in view.channels:  # made for a stream that has not subscribed yet (View.subscribe)
                del self.views[subscription]

    def view(self, subscription: Subscription) -> View:
        """The view streams of ``subscription`` share; its topics must be served."""
        view = self.views.get(subscription)
        if view is None:
            # Registered at once, so that streams still catching up share it too;
            # it leaves when its last stream ends (View.unsubscribe).
            channels = [self.channels[topic] for topic in subscription.topics]
            view = self.views[subscription] = View(subscription, channels, self.views, self._ahead_wait)
        return view

    def _all_views(self) -> list[Listener]:
        """Each view once: registered ones, and those still on a channel (a dict keeps them in order, unique)."""
        views: dict[Listener, None] = dict.fromkeys(self.views.values())
        views.update(dict.fromkeys(view for channel in self.channels.values() for view in channel.views))
        return list(views)

    def open_streams(self) -> list[Subscriber]:
        """Every subscriber of every view: live, or waiting for the channels to reach its cursor."""
        return [subscriber for view in self._all_views() for subscriber in view.open_streams()]

    def close_all(self, reason: CloseReason) -> None:
        for view in self._all_views():
            view.close_all(reason)
