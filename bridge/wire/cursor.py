"""Event ids are Kafka cursors.

A cursor is, for every partition of a topic, the offset of the next record a
client has not seen yet. It is written as those offsets in partition order,
joined by dots: ``120.98.77`` means partition 0 resumes at offset 120,
partition 1 at 98 and partition 2 at 77. Because it is made of Kafka offsets it
means the same on every replica and after any restart.

A cursor with fewer offsets than the topic has partitions means "from the
beginning" for the missing ones (a partition added after the id was issued).

A stream over several topics has one cursor per topic, in the order of the
topics' names (not the order the URL lists them, so the same set of topics
always reads the same id), joined by ``~``: ``120.98.77~5.6`` is topic ``a``
at 120.98.77 and topic ``b`` at 5.6 for ``?topic=b&topic=a``. A single-topic
id never contains ``~``, so a one-topic stream keeps plain ids. ``,`` stays
reserved.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_CURSOR_LENGTH = 8192
MAX_OFFSET_DIGITS = 19  # Kafka offsets are signed 64-bit integers
TOPIC_SEPARATOR = "~"


class CursorError(ValueError):
    """A Last-Event-ID that is not a cursor this bridge could have issued."""


def encode(offsets: Sequence[int]) -> str:
    return ".".join(map(str, offsets))


def parse(text: str) -> tuple[int, ...]:
    if not text:
        raise CursorError("the event id is empty")
    if len(text) > MAX_CURSOR_LENGTH:
        raise CursorError(f"the event id is longer than {MAX_CURSOR_LENGTH} characters")
    offsets = []
    for part in text.split("."):
        # isdecimal() also accepts non-ASCII digits; ids are ASCII only
        if not (part.isascii() and part.isdecimal()) or len(part) > MAX_OFFSET_DIGITS:
            raise CursorError(f"the event id {_shorten(text)!r} is not a list of offsets joined by '.'")
        offsets.append(int(part))
    return tuple(offsets)


def encode_streams(cursors: Sequence[Sequence[int]]) -> str:
    """One id for a stream over several topics: their cursors, in topic-name order, joined by ``~``."""
    return TOPIC_SEPARATOR.join(map(encode, cursors))


def encode_around(cursors: Sequence[Sequence[int]], stream: int, partition: int) -> tuple[str, str]:
    """The id of ``cursors`` split around ``cursors[stream][partition]``: with
    that offset changed to ``n`` the id is ``before + str(n) + after``, so a run of
    records of one partition gets its ids without encoding the whole cursor each time."""
    own = cursors[stream]
    head = "".join(encode(c) + TOPIC_SEPARATOR for c in cursors[:stream])
    tail = "".join(TOPIC_SEPARATOR + encode(c) for c in cursors[stream + 1 :])
    return head + "".join(f"{o}." for o in own[:partition]), "".join(f".{o}" for o in own[partition + 1 :]) + tail


def parse_streams(text: str, topics: int) -> tuple[tuple[int, ...], ...]:
    """The per-topic cursors of a stream over ``topics`` topics."""
    parts = text.split(TOPIC_SEPARATOR)
    if len(parts) != topics:
        raise CursorError(f"the event id {_shorten(text)!r} covers {len(parts)} topic(s), this stream has {topics}")
    if len(text) > MAX_CURSOR_LENGTH:
        raise CursorError(f"the event id is longer than {MAX_CURSOR_LENGTH} characters")
    return tuple(parse(part) for part in parts)


def offset_for(cursor: Sequence[int], partition: int) -> int:
    """The cursor's next offset for ``partition``; 0 where the cursor predates it."""
    return cursor[partition] if partition < len(cursor) else 0


def _shorten(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
