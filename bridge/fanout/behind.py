"""A subscriber behind the live path: its place in every ring of its view, fed at its own pace.

A live subscriber whose next chunk does not fit its outbox leaves the live
path (views.py) holding only where it is: per topic of its view, the number
of the next ring entry it needs and the cursor of the last event it was
given. Whenever its connection has written everything queued, it takes the
next entries from the rings (``next_chunk``), selected and encoded as its
view's live path would (filter, format, ids covering every topic), with ids
from its own cursor. Level with every ring, it rejoins the live path; if a
ring has given up an entry it still needs, it is caught up from Kafka from
its cursor (kafka/catchup.py) and comes back through the rings. Either step
happens without an await, as publishing does, so the hand-over is exact:
no gap, no duplicate. A stream resuming from the ring starts here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bridge.fanout.batch import frame_id
from bridge.fanout.channel import Channel
from bridge.fanout.outbox import Cursor, Subscriber
from bridge.fanout.ring import Entry
from bridge.wire import cursor as cursors
from bridge.wire import sse
from bridge.wire.events import KafkaRecord
from bridge.wire.formats import ParsedRecord


class Source(Protocol):
    """What a behind subscriber needs of its view (views.View)."""

    @property
    def channels(self) -> Sequence[Channel]: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def own_frames(self) -> bool: ...

    def keeps(self, record: KafkaRecord) -> tuple[bool, ParsedRecord | None]: ...

    def event(self, index: int, record: KafkaRecord, id: str, parsed: ParsedRecord | None = None,
              entry: Entry | None = None) -> bytes: ...  # fmt: skip

    def join_live(self, behind: Behind) -> None: ...

    def leave_rings(self, behind: Behind) -> None: ...


class Behind:
    """Where one subscriber is in the rings of its view."""

    __slots__ = ("cursor", "seqs", "subscriber", "turn", "view")

    def __init__(self, view: Source, subscriber: Subscriber, seqs: list[int], cursor: Sequence[Sequence[int]]) -> None:
        self.view = view
        self.subscriber = subscriber
        self.seqs = seqs  # per channel: the number of the next entry to look at
        # per channel: the cursor of the last event given (the client's last id), kept encoded;
        # the channel's partitions it predates at 0, so that its ids are the channel's frames' ids
        self.cursor = [cursors.CursorWriter([*own, *[0] * (len(channel.position) - len(own))], tag)
                       for channel, own, tag in zip(view.channels, cursor, view.tags, strict=True)]  # fmt: skip
        self.turn = 0  # the topic the next chunk starts with: each gets its turn, a busy one cannot starve the rest

    def position(self) -> Cursor:
        return tuple(tuple(writer.offsets) for writer in self.cursor)

    def next_chunk(self, room: int) -> bytes:
        """The next events, about ``room`` bytes (at least one event); b"" once level
        (it has rejoined the live path) or once a ring no longer has its next entry."""
        view, frames, size, skipped = self.view, list[bytes](), 0, False
        count = len(view.channels)
        for index in (*range(self.turn, count), *range(self.turn)):
            channel = view.channels[index]
            seq, ring, writer = self.seqs[index], channel.ring, self.cursor[index]
            if seq < ring.first_seq:
                if not ring.uncovered(writer.offsets):
                    # only entries it had are gone (it starts from the ring's oldest): read on from there
                    seq = ring.first_seq
                elif frames:  # these first; the next call finds the ring moved on
                    break
                else:
                    view.leave_rings(self)
                    return b""
            head, tail = cursors.around(self.cursor, index)  # the other topics do not move meanwhile
            given = 0
            offsets = writer.offsets
            for entry in ring.since(seq):
                seq += 1
                partition = entry.partition
                if partition >= len(offsets):  # a partition added since it fell behind
                    writer.extend([0] * (partition + 1 - len(offsets)))
                if entry.offset < offsets[partition]:
                    continue  # the client had it already (an id another replica issued may be ahead here)
                own = writer.advance(partition, entry.offset + 1)
                kept, parsed = view.keeps(entry.record)
                if not kept:
                    skipped = True
                    continue
                skipped = False
                given += 1
                if view.own_frames and own.encode() == frame_id(entry.frame):
                    frame = entry.frame
                else:
                    frame = view.event(index, entry.record, head + own + tail, parsed, entry)
                frames.append(frame)
                size += len(frame)
                if size >= room:
                    break
            self.seqs[index] = seq
            channel.stats.events_delivered += given
            if size >= room:
                self.turn = (index + 1) % count
                break
        if skipped:  # the client's last id moves past what the filter skipped
            frames.append(sse.format_id(cursors.stream_id(self.cursor)))
        if all(seq == channel.ring.next_seq for seq, channel in zip(self.seqs, view.channels, strict=True)):
            view.join_live(self)
        return b"".join(frames)
