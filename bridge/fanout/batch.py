"""One channel's published batch, as the views over it see it.

Each distinct filter is evaluated once per record of the batch and each
format's event body is encoded once per record, on first use, whatever the
number of views (and of subscribers) asking. A record's value is parsed as
JSON at most once, shared by every filter and the envelope.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.fanout.ring import Entry
from bridge.wire.filters import Filter
from bridge.wire.formats import Format, ParsedRecord, envelope_event

ID_START = len(b"id: ")


def frame_id(frame: bytes) -> bytes:
    """A channel frame's id (the id line always comes first)."""
    return frame[ID_START : frame.index(b"\n")]


def raw_body(frame: bytes) -> bytes:
    """A channel frame without its id line (the id line always comes first)."""
    return frame[frame.index(b"\n") + 1 :]


class Batch:
    __slots__ = ("_bodies", "_frames", "_parsed", "_selected", "entries", "first_seq", "start", "topic", "type_header")

    def __init__(self, topic: str, type_header: str | None, entries: Sequence[Entry], *, first_seq: int = 0,
                 start: tuple[int, ...] = ()) -> None:  # fmt: skip
        self.topic = topic
        self.type_header = type_header
        self.entries = entries
        self.first_seq = first_seq  # the ring's number of entries[0]
        self.start = start  # the channel's position before the batch: where a subscriber it leaves behind is
        self._parsed: list[ParsedRecord] | None = None
        self._selected: dict[Filter, list[int]] = {}
        self._bodies: dict[Format, list[bytes | None]] = {}
        self._frames: bytes | None = None

    def selected(self, filter: Filter) -> list[int]:
        """Indices of the entries ``filter`` keeps."""
        found = self._selected.get(filter)
        if found is None:
            if not filter:
                found = list(range(len(self.entries)))
            else:
                found = [index for index, parsed in enumerate(self._parsed_records()) if filter.matches(parsed)]
            self._selected[filter] = found
        return found

    def _parsed_records(self) -> list[ParsedRecord]:
        if self._parsed is None:
            self._parsed = [ParsedRecord(entry.record) for entry in self.entries]
        return self._parsed

    def frames(self, selected: Sequence[int]) -> bytes:
        """The channel's own frames of ``selected``, joined; the whole batch's once for all."""
        if len(selected) < len(self.entries):
            return b"".join(self.entries[index].frame for index in selected)
        if self._frames is None:
            self._frames = b"".join(entry.frame for entry in self.entries)
        return self._frames

    def own_id(self, index: int) -> bytes:
        """The record's id within its own topic: the channel's position after it."""
        return frame_id(self.entries[index].frame)

    def body(self, format: Format, index: int) -> bytes:
        """The record's event in ``format``, without the id line."""
        bodies = self._bodies.get(format)
        if bodies is None:
            bodies = self._bodies[format] = [None] * len(self.entries)
        body = bodies[index]
        if body is None:
            entry = self.entries[index]
            if format is Format.RAW:
                body = raw_body(entry.frame)
            else:
                parsed = self._parsed_records()[index]
                body = envelope_event(self.topic, parsed, id=None, type_header=self.type_header)
            bodies[index] = body
        return body
