"""Event ids are Kafka cursors.

A cursor is, for every partition of a topic, the offset of the next record a
client has not seen yet. It is written in one of two forms, told apart by the
first character:

- readable: those offsets in partition order, joined by dots: ``120.98.77``
  means partition 0 resumes at offset 120, partition 1 at 98 and partition 2
  at 77 (it starts with a digit);
- compact: ``-``, the width ``w`` (one digit, 1-9), a base offset in decimal,
  ``.``, then per partition ``w`` base64url digits (``A`` = 0 … ``_`` = 63,
  most significant first) of its offset minus the base:
  ``-3999997440.AoAAp7QmY`` is 1000000000, 1000000123 and 1000065432
  (999997440 plus ``AoA`` = 2560, ``Ap7`` = 2683, ``QmY`` = 67992). The base is the
  smallest offset rounded down to a multiple of 4096, the width the fewest
  digits that hold the largest difference, so on a topic whose partitions are
  within 258,048 of each other (64³ less one step of the base) a partition
  costs 3 characters whatever its offsets.

The bridge writes the compact form where it is more than 8 characters
shorter, the readable one otherwise (a topic of a few partitions keeps
``120.98.77``), and reads both, so ids written before the compact form existed
resume as they always did. Because a cursor is
made of Kafka offsets it means the same on every replica and after any
restart.

A cursor with fewer offsets than the topic has partitions means "from the
beginning" for the missing ones (a partition added after the id was issued).

A stream over several topics has one cursor per topic, in the order of the
topics' names (not the order the URL lists them, so the same set of topics
always reads the same id), joined by ``~``: ``120.98.77~5.6`` is topic ``a``
at 120.98.77 and topic ``b`` at 5.6 for ``?topic=b&topic=a``. Each topic's
cursor has its own form. A single-topic id never contains ``~``, so a
one-topic stream keeps plain ids. ``,`` stays reserved.

Each topic's cursor ends with its topic's tag: ``120.98.77@Zk3q``. Kafka gives
every topic a random id when it is created; the tag is its first 24 bits in
base64url (4 characters). A topic deleted and created again under the same
name gets another id, so an id issued for the old topic is recognised as
such (its offsets alone cannot tell: the new topic may have as many records).
A cursor without a tag (issued before tags, or for a broker that reports no
topic ids) is read as it always was. Two ids of one name collide with a
chance of 1 in 16.7 million.

Neither form holds ``~``, ``,`` or ``@``: the compact alphabet is digits,
letters, ``-`` and ``_``, all ASCII, and safe unescaped in a URL query.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

MAX_CURSOR_LENGTH = 8192
MAX_OFFSET_DIGITS = 19  # Kafka offsets are signed 64-bit integers
MAX_OFFSET = 2**63 - 1
TOPIC_SEPARATOR = "~"
TAG_SEPARATOR = "@"
TAG = re.compile(r"[A-Za-z0-9_-]{4}")
COMPACT = "-"  # a readable cursor starts with a digit
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"  # base64url
DIGIT_VALUES = {digit: value for value, digit in enumerate(ALPHABET)}
# The base moves in steps, so that along a run of records it rarely moves at
# all and a CursorWriter rewrites one field instead of the whole cursor.
BASE_STEP = 4096
MAX_WIDTH = 9  # one decimal digit; 54 bits of difference, wider spreads are written readable
# The readable form is kept unless the compact one saves more than this: ids
# one can read on a topic of a few partitions, instead of a form that flips
# with the offsets' lengths for a byte or two.
READABLE_SLACK = 8
_COMPACT_FORM = re.compile(r"-([1-9])(0|[1-9][0-9]{0,18})\.([A-Za-z0-9_-]+)")


class CursorError(ValueError):
    """A Last-Event-ID that is not a cursor this bridge could have issued."""


def topic_tag(topic_id: bytes) -> str:
    """The tag of a Kafka topic id (16 bytes); "" for the all-zero id of a broker that has none."""
    return base64.urlsafe_b64encode(topic_id[:3]).decode() if any(topic_id) else ""


def encode(offsets: Sequence[int], tag: str = "") -> str:
    """A topic's cursor: compact where that is more than ``READABLE_SLACK`` shorter, readable otherwise."""
    return CursorWriter(offsets, tag).text


def _digits(value: int, width: int) -> str:
    """``value`` in ``width`` base64url digits, two at a time from a table: this runs once per record."""
    if width <= 2:
        return (_SINGLES if width == 1 else _PAIRS)[value]
    if width <= 4:
        return (_SINGLES if width == 3 else _PAIRS)[value >> 12] + _PAIRS[value & 4095]
    return _digits(value >> 24, width - 4) + _PAIRS[(value >> 12) & 4095] + _PAIRS[value & 4095]


_SINGLES = list(ALPHABET)
_PAIRS = [high + low for high in _SINGLES for low in _SINGLES]  # the 4096 two-digit values, 240 KB


class CursorWriter:
    """One topic's cursor, kept encoded while its offsets advance.

    In the compact form every partition has a field of the same width, so
    advancing one partition replaces that field between the text before and
    after it: the cost of an id is copying its bytes, not encoding every
    partition. The whole cursor is encoded again only when the base or the
    width must change (the smallest offset passed a multiple of 4096, a
    difference outgrew the width, an offset went back), or while the readable
    form is written (a few partitions: a few offsets to join). ``text`` is
    always ``encode(offsets, tag)``, whatever the history of the offsets.
    """

    __slots__ = ("_base", "_head", "_limit", "_low", "_low_end", "_readable", "_readable_limit", "_suffix",
                 "_width", "offsets", "text")  # fmt: skip
    text: str  # the cursor, encoded

    def __init__(self, offsets: Sequence[int], tag: str = "") -> None:
        self.offsets = list(offsets)
        self._suffix = TAG_SEPARATOR + tag if tag else ""
        self._encode()

    def advance(self, partition: int, offset: int) -> str:
        """Set ``partition``'s next offset to ``offset``; the cursor's new text."""
        offsets = self.offsets  # partitions are added through extend() only, never by a record
        old, offsets[partition] = offsets[partition], offset
        if old < self._low_end <= offset:  # it left the base's step: the base moves when none is left there
            self._low -= 1
        difference, width = offset - self._base, self._width
        if not (old <= offset and difference < self._limit and self._low):
            self._encode()  # a new base or width
        elif not self._readable:
            start = self._head + partition * width
            text = self.text  # slices and a concatenation: faster than a bytearray rewritten and decoded
            self.text = text[:start] + _digits(difference, width) + text[start + width :]
        elif len(readable := ".".join(map(str, offsets))) <= self._readable_limit:
            self.text = readable + self._suffix
        else:
            self._encode()  # the compact form is now shorter by enough
        return self.text

    def extend(self, offsets: Sequence[int]) -> None:
        """Partitions added to the topic, with their offsets."""
        self.offsets.extend(offsets)
        self._encode()

    def _encode(self) -> None:
        offsets = self.offsets
        readable = ".".join(map(str, offsets))
        self._base = base = min(offsets, default=0) // BASE_STEP * BASE_STEP
        self._width = width = max(1, -(-(max(offsets, default=0) - base).bit_length() // 6))
        head = f"{COMPACT}{width}{base}."
        self._head = len(head)
        self._readable_limit = len(head) + width * len(offsets) + READABLE_SLACK  # the compact length, and the slack
        self._limit = 64**width
        self._low_end = base + BASE_STEP
        self._low = sum(offset < self._low_end for offset in offsets)
        self._readable = width > MAX_WIDTH or len(readable) <= self._readable_limit
        if self._readable:
            self.text = readable + self._suffix
        else:
            self.text = head + "".join(_digits(offset - base, width) for offset in offsets) + self._suffix


def around(writers: Sequence[CursorWriter], stream: int) -> tuple[str, str]:
    """What comes before and after ``writers[stream]``'s cursor in the id of
    a stream over their topics: along a run of records of one topic, the
    id is ``before + writers[stream].text + after``."""
    before = "".join(writer.text + TOPIC_SEPARATOR for writer in writers[:stream])
    return before, "".join(TOPIC_SEPARATOR + writer.text for writer in writers[stream + 1 :])


def stream_id(writers: Sequence[CursorWriter]) -> str:
    """The id of a stream over the writers' topics, at their current offsets."""
    return TOPIC_SEPARATOR.join(writer.text for writer in writers)


def parse(text: str) -> tuple[int, ...]:
    """A topic's cursor: its offsets (its tag checked, see ``parse_tagged``)."""
    return parse_tagged(text)[0]


def parse_tagged(text: str) -> tuple[tuple[int, ...], str]:
    """A topic's cursor, in either form: its offsets and its tag ("" for an id without one)."""
    if not text:
        raise CursorError("the event id is empty")
    if len(text) > MAX_CURSOR_LENGTH:
        raise CursorError(f"the event id is longer than {MAX_CURSOR_LENGTH} characters")
    offsets_text, separator, tag = text.partition(TAG_SEPARATOR)
    if separator and not TAG.fullmatch(tag):
        raise CursorError(f"the event id {_shorten(text)!r} does not end with a topic tag of 4 characters")
    if offsets_text.startswith(COMPACT):
        return _parse_compact(offsets_text, text), tag
    offsets = []
    for part in offsets_text.split("."):
        # isdecimal() also accepts non-ASCII digits; ids are ASCII only
        if not (part.isascii() and part.isdecimal()) or len(part) > MAX_OFFSET_DIGITS:
            raise CursorError(f"the event id {_shorten(text)!r} is not a list of offsets joined by '.'")
        offsets.append(int(part))
    return tuple(offsets), tag


def _parse_compact(offsets_text: str, text: str) -> tuple[int, ...]:
    form = _COMPACT_FORM.fullmatch(offsets_text)
    if form is None or len(form[3]) % int(form[1]):
        raise CursorError(
            f"the event id {_shorten(text)!r} is not a compact cursor: '-', a width of 1-9, a base offset, '.', "
            "then that many base64url digits per partition"
        )
    width, base, fields = int(form[1]), int(form[2]), form[3]
    offsets = []
    for start in range(0, len(fields), width):
        value = 0
        for digit in fields[start : start + width]:
            value = value * 64 + DIGIT_VALUES[digit]
        offsets.append(base + value)
    if max(offsets) > MAX_OFFSET:
        raise CursorError(f"the event id {_shorten(text)!r} has an offset past the largest Kafka offset")
    return tuple(offsets)


def encode_streams(cursors: Sequence[Sequence[int]], tags: Sequence[str]) -> str:
    """One id for a stream over several topics: their cursors, in topic-name order, joined by ``~``."""
    return TOPIC_SEPARATOR.join(map(encode, cursors, tags))


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
