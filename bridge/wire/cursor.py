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

Each topic's cursor ends with its topic's tag: ``120.98.77@Zk3q``. Kafka gives
every topic a random id when it is created; the tag is its first 24 bits in
base64url (4 characters). A topic deleted and created again under the same
name gets another id, so an id issued for the old topic is recognised as
such (its offsets alone cannot tell: the new topic may have as many records).
A cursor without a tag (issued before tags, or for a broker that reports no
topic ids) is read as it always was. Two ids of one name collide with a
chance of 1 in 16.7 million.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

MAX_CURSOR_LENGTH = 8192
MAX_OFFSET_DIGITS = 19  # Kafka offsets are signed 64-bit integers
TOPIC_SEPARATOR = "~"
TAG_SEPARATOR = "@"
TAG = re.compile(r"[A-Za-z0-9_-]{4}")


class CursorError(ValueError):
    """A Last-Event-ID that is not a cursor this bridge could have issued."""


def topic_tag(topic_id: bytes) -> str:
    """The tag of a Kafka topic id (16 bytes); "" for the all-zero id of a broker that has none."""
    return base64.urlsafe_b64encode(topic_id[:3]).decode() if any(topic_id) else ""


def encode(offsets: Sequence[int], tag: str = "") -> str:
    return ".".join(map(str, offsets)) + (TAG_SEPARATOR + tag if tag else "")


def parse(text: str) -> tuple[int, ...]:
    """A topic's cursor: its offsets (its tag checked, see ``parse_tagged``)."""
    return parse_tagged(text)[0]


def parse_tagged(text: str) -> tuple[tuple[int, ...], str]:
    """A topic's cursor: its offsets and its tag ("" for an id without one)."""
    if not text:
        raise CursorError("the event id is empty")
    if len(text) > MAX_CURSOR_LENGTH:
        raise CursorError(f"the event id is longer than {MAX_CURSOR_LENGTH} characters")
    offsets_text, separator, tag = text.partition(TAG_SEPARATOR)
    if separator and not TAG.fullmatch(tag):
        raise CursorError(f"the event id {_shorten(text)!r} does not end with a topic tag of 4 characters")
    offsets = []
    for part in offsets_text.split("."):
        # isdecimal() also accepts non-ASCII digits; ids are ASCII only
        if not (part.isascii() and part.isdecimal()) or len(part) > MAX_OFFSET_DIGITS:
            raise CursorError(f"the event id {_shorten(text)!r} is not a list of offsets joined by '.'")
        offsets.append(int(part))
    return tuple(offsets), tag


def encode_streams(cursors: Sequence[Sequence[int]], tags: Sequence[str]) -> str:
    """One id for a stream over several topics: their cursors, in topic-name order, joined by ``~``."""
    return TOPIC_SEPARATOR.join(map(encode, cursors, tags))


def encode_around(
    cursors: Sequence[Sequence[int]], tags: Sequence[str], stream: int, partition: int
) -> tuple[str, str]:
    """The id of ``cursors`` split around ``cursors[stream][partition]``: with
    that offset changed to ``n`` the id is ``before + str(n) + after``, so a run of
    records of one partition gets its ids without encoding the whole cursor each time."""
    own, tag = cursors[stream], tags[stream]
    head = "".join(encode(c, t) + TOPIC_SEPARATOR for c, t in zip(cursors[:stream], tags[:stream], strict=True))
    tail = "".join(
        TOPIC_SEPARATOR + encode(c, t) for c, t in zip(cursors[stream + 1 :], tags[stream + 1 :], strict=True)
    )
    own_tail = "".join(f".{o}" for o in own[partition + 1 :]) + (TAG_SEPARATOR + tag if tag else "")
    return head + "".join(f"{o}." for o in own[:partition]), own_tail + tail


def parse_streams(text: str, topics: int) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]]:
    """The per-topic cursors of a stream over ``topics`` topics, and their tags."""
    parts = text.split(TOPIC_SEPARATOR)
    if len(parts) != topics:
        raise CursorError(f"the event id {_shorten(text)!r} covers {len(parts)} topic(s), this stream has {topics}")
    if len(text) > MAX_CURSOR_LENGTH:
        raise CursorError(f"the event id is longer than {MAX_CURSOR_LENGTH} characters")
    parsed = [parse_tagged(part) for part in parts]
    return tuple(offsets for offsets, _ in parsed), tuple(tag for _, tag in parsed)


def offset_for(cursor: Sequence[int], partition: int) -> int:
    """The cursor's next offset for ``partition``; 0 where the cursor predates it."""
    return cursor[partition] if partition < len(cursor) else 0


def _shorten(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
