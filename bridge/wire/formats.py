"""What a stream's events carry: the record's value (``raw``) or an envelope.

``raw`` is the default mapping of events.py. ``envelope`` makes the event
data one JSON object with the record's metadata (documented in
docs/subscribing.md)::

    {"topic": "orders", "partition": 0, "offset": 41, "timestamp": 1767225600000,
     "key": "order-7", "headers": [["event-type", "created"]],
     "value": {"id": 7}, "value_encoding": "json", "tombstone": false}

- ``value`` is embedded as JSON when the value is JSON (``value_encoding``
  ``"json"``), a string when it is other UTF-8 text (``"text"``), standard
  base64 when it is not UTF-8 (``"base64"``); a tombstone has ``value`` null,
  ``value_encoding`` null and ``tombstone`` true;
- ``key`` is a string, ``{"base64": "..."}`` when it is not UTF-8, or null;
- ``headers`` is a list of ``[name, value]`` pairs in record order (a name may
  repeat), each value a string or ``{"base64": "..."}``.

The event type follows the same header rule as ``raw`` (``message`` unless
the type header names one); tombstones and binary values are ordinary
events here, since the envelope says what they are.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence

import orjson

from bridge.wire import sse
from bridge.wire.events import KafkaRecord, event_type_from_headers
from bridge.wire.filters import NOT_JSON


class Format(enum.StrEnum):
    RAW = "raw"
    ENVELOPE = "envelope"


_UNPARSED = object()


class ParsedRecord:
    """A record whose value is parsed as JSON at most once, whoever asks
    (every filter of a batch, the envelope)."""

    __slots__ = ("_json", "record")

    def __init__(self, record: KafkaRecord) -> None:
        self.record = record
        self._json: object = _UNPARSED

    @property
    def key(self) -> bytes | None:
        return self.record.key

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]:
        return self.record.headers

    def json(self) -> object:
        if self._json is _UNPARSED:
            value = self.record.value
            try:
                self._json = NOT_JSON if value is None else orjson.loads(value)
            except orjson.JSONDecodeError:
                self._json = NOT_JSON
        return self._json


def envelope_event(topic: str, parsed: ParsedRecord, *, id: str | None, type_header: str | None) -> bytes:
    record = parsed.record
    value = record.value
    body: object
    if value is None:
        body, encoding = None, None
    elif parsed.json() is not NOT_JSON:
        body, encoding = orjson.Fragment(value), "json"  # the producer's bytes, not parsed and dumped again
    else:
        text = _text(value)
        body, encoding = (text, "text") if text is not None else (base64.b64encode(value).decode(), "base64")
    envelope = {
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": None if record.key is None else _text_or_base64(record.key),
        "headers": [(name, _text_or_base64(raw)) for name, raw in record.headers],
        "value": body,
        "value_encoding": encoding,
        "tombstone": value is None,
    }
    event = event_type_from_headers(record.headers, type_header) if record.headers else None
    return sse.format_event(data=orjson.dumps(envelope), event=event, id=id)


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _text_or_base64(raw: bytes) -> str | dict[str, str]:
    text = _text(raw)
    return text if text is not None else {"base64": base64.b64encode(raw).decode()}
