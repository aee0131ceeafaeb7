"""How a Kafka record, and each in-band notice, becomes an SSE event.

Record to event (documented in docs/subscribing.md, "What a browser receives"):

- data is the record's value, unchanged, when it is UTF-8 text (empty included);
- the event type is ``message`` unless the record carries the configured type
  header with a usable name (UTF-8, 1-64 characters, no CR/LF/NUL, not one of
  the bridge's own event types);
- a null value (a tombstone) is an event of type ``tombstone`` with empty data;
- a value that is not UTF-8 is an event of type ``binary`` whose data is the
  value in standard base64, since an SSE stream is UTF-8 text;
- keys and headers are not part of the default event;
- a record of a schema topic is sent decoded: its data is the decoded JSON
  (a message event, typed from the header like any other); one that could not
  be decoded is an event of type ``undecodable`` (decoded.py says its data).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Protocol

import orjson

from bridge.wire import sse
from bridge.wire.decoded import UNDECODABLE, DecodedRecord, undecodable_data

TOMBSTONE = "tombstone"
BINARY = "binary"
GAP = "gap"
RESET = "reset"
REAUTH = "reauth"
DELETED = "deleted"
RESERVED_TYPES = frozenset({TOMBSTONE, BINARY, GAP, RESET, REAUTH, DELETED, UNDECODABLE, "message"})
RECORD_TYPES = frozenset({"message", TOMBSTONE, BINARY, UNDECODABLE})  # besides the names a type header gives
CONTROL_TYPES = RESERVED_TYPES - RECORD_TYPES  # the bridge's in-band notices, never a record
MAX_TYPE_LENGTH = 64


class KafkaRecord(Protocol):
    """The part of aiokafka's ConsumerRecord the bridge reads."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...
    @property
    def timestamp(self) -> int: ...  # epoch milliseconds


def header_value(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """The value of the first header called ``name``."""
    for header, value in headers or ():
        if header == name:
            return value
    return None


def event_type_from_headers(headers: Sequence[tuple[str, bytes]], type_header: str | None) -> str | None:
    if type_header is None or (raw := header_value(headers, type_header)) is None:
        return None
    try:
        candidate = raw.decode()
    except UnicodeDecodeError:
        return None
    usable = 0 < len(candidate) <= MAX_TYPE_LENGTH and candidate not in RESERVED_TYPES
    if usable and not any(char in candidate for char in "\r\n\x00"):
        return candidate
    return None


def record_event(record: KafkaRecord, *, id: str, type_header: str | None) -> bytes:
    value = record.value
    if value is None:
        return sse.format_event(data=b"", event=TOMBSTONE, id=id)
    if type(record) is DecodedRecord and record.undecodable is not None:
        return sse.format_event(data=undecodable_data(record), event=UNDECODABLE, id=id)
    if not value.isascii():  # ASCII is UTF-8; only other values need the full check
        try:
            value.decode()
        except UnicodeDecodeError:
            return sse.format_event(data=base64.b64encode(value), event=BINARY, id=id)
    event = event_type_from_headers(record.headers, type_header) if record.headers else None
    return sse.format_event(data=value, event=event, id=id)


def gap_event(topic: str, lost: Sequence[tuple[int, int, int]]) -> bytes:
    """``event: gap``: records from ``requested`` up to ``first_available`` of each
    listed partition will not be delivered. No id: the client's last id stays
    the one it had, the stream goes on from ``first_available``."""
    partitions = [
        {"partition": partition, "requested": requested, "first_available": first_available}
        for partition, requested, first_available in lost
    ]
    return sse.format_event(data=orjson.dumps({"topic": topic, "partitions": partitions}), event=GAP)


def reset_event(topic: str, ahead: Sequence[tuple[int, int, int]]) -> bytes:
    """``event: reset``: the id asked for offsets past the end of these
    partitions (a forged id, or an untagged id of a topic deleted and created
    again); they go on from ``end``, the live position."""
    partitions = [{"partition": partition, "requested": requested, "end": end} for partition, requested, end in ahead]
    return sse.format_event(data=orjson.dumps({"topic": topic, "partitions": partitions}), event=RESET)


def recreated_event(topic: str, requested: Sequence[int]) -> bytes:
    """``event: reset`` with ``"reason": "recreated"``: the id was issued for
    an earlier topic of this name (its tag names another topic id). The stream
    goes on from the new topic's first offsets (``end`` 0): all of its records
    are new to the client."""
    listed = [{"partition": p, "requested": offset, "end": 0} for p, offset in enumerate(requested)]
    body = {"topic": topic, "reason": "recreated", "partitions": listed}
    return sse.format_event(data=orjson.dumps(body), event=RESET)


def deleted_event(topic: str) -> bytes:
    """``event: deleted``, data ``{"topic": name}``: the topic was deleted from
    Kafka; the stream ends next (a reconnect gets ``404 unknown_topic`` until a
    topic of that name exists again). No id."""
    return sse.format_event(data=orjson.dumps({"topic": topic}), event=DELETED)


def reauth_event(reason: str) -> bytes:
    """``event: reauth``, data ``{"reason": "token_expired"}``: the stream
    ends next; reconnect with a fresh token and the last event id. No id, so
    the client's last id stays the last record's."""
    return sse.format_event(data=orjson.dumps({"reason": reason}), event=REAUTH)
