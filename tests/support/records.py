"""Plain records and views for the hub's unit tests: no broker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.fanout.channel import Channel
from bridge.fanout.views import Subscription, View


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: int = 0
    key: bytes | None = None


def plain(channel: Channel) -> View:
    """The channel's one-topic, unfiltered, raw view: what ``/sse/{topic}`` serves."""
    subscription = Subscription.of([channel.topic])
    views = (view for view in channel.views if isinstance(view, View) and view.subscription == subscription)
    return next(views, None) or View(subscription, [channel], {})
