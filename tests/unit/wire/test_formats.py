"""The envelope format, byte for byte where it matters."""

from __future__ import annotations

import base64

import orjson
import pytest

from bridge.wire.formats import ParsedRecord, envelope_event
from tests.support.records import Record
from tests.support.sseparse import Parser


def envelope(record: Record, type_header: str | None = "event-type") -> tuple[str, dict[str, object]]:
    events = Parser().feed(envelope_event("orders", ParsedRecord(record), id="5.6", type_header=type_header))
    assert len(events) == 1
    assert events[0].id == "5.6"
    return events[0].type, orjson.loads(events[0].data)


def test_a_json_value_is_embedded_with_the_record_metadata() -> None:
    headers = (("event-type", b"created"), ("h", b"1"), ("h", b"2"))
    record = Record(2, 41, b'{"id": 7,\n "tags": ["a"]}', headers=headers, timestamp=1767225600000, key=b"order-7")
    event_type, body = envelope(record)
    assert event_type == "created"
    assert body == {
        "topic": "orders", "partition": 2, "offset": 41, "timestamp": 1767225600000, "key": "order-7",
        "headers": [["event-type", "created"], ["h", "1"], ["h", "2"]],
        "value": {"id": 7, "tags": ["a"]}, "value_encoding": "json", "tombstone": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected", "encoding"),
    [
        (b"hello", "hello", "text"),
        ("h\u00e9llo".encode(), "h\u00e9llo", "text"),
        (b'"hello"', "hello", "json"),
        (b"42", 42, "json"),
        (b"", "", "text"),
        (b"\xff\x00\x01", base64.b64encode(b"\xff\x00\x01").decode(), "base64"),
    ],
)
def test_values_that_are_not_json_objects(value: bytes, expected: object, encoding: str) -> None:
    _, body = envelope(Record(0, 0, value))
    assert (body["value"], body["value_encoding"], body["tombstone"]) == (expected, encoding, False)


def test_a_tombstone_is_null_with_a_flag_and_no_key_is_null() -> None:
    event_type, body = envelope(Record(0, 3, None))
    assert event_type == "message"
    assert (body["value"], body["value_encoding"], body["tombstone"], body["key"]) == (None, None, True, None)


def test_keys_and_headers_that_are_not_utf8_are_base64_objects() -> None:
    _, body = envelope(Record(0, 0, b"x", key=b"\xfe", headers=(("bin", b"\x80"),)))
    assert body["key"] == {"base64": "/g=="}
    assert body["headers"] == [["bin", {"base64": "gA=="}]]
