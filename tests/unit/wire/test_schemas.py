"""Decoding records of schema topics, from bytes and a schema: the wire format, the
Avro and Protobuf readers, and what the events of decoded and undecodable records hold.
(The registry, the serializers and the browser side: tests/integration/test_schemas.py.)"""

from __future__ import annotations

import base64
import io

import orjson
import pytest
from fastavro import parse_schema, schemaless_writer
from google.protobuf import descriptor_pb2, timestamp_pb2

from bridge.wire import registryformat
from bridge.wire.decoded import DecodedRecord, Reason, Undecodable
from bridge.wire.events import record_event
from bridge.wire.filters import parse_filter
from bridge.wire.formats import ParsedRecord, envelope_event
from bridge.wire.protojson import SchemaError
from bridge.wire.schemas import Lookup, Schema, compile_schema, decode_record, schema_ids
from tests.support.records import Record
from tests.support.sseparse import Parser

POINT = '{"type": "record", "name": "P", "fields": [{"name": "x", "type": "long"}, {"name": "tag", "type": ["null", "string"]}]}'  # noqa: E501
PROTO = 'syntax = "proto3"; package t; message A { int64 n = 1; } message B { message C { string s = 1; } C c = 1; }'


def avro(value: object, schema_id: int = 7) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(orjson.loads(POINT)), value)
    return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()


def lookup(schemas: dict[int, Schema]) -> Lookup:
    return lambda schema_id: schemas.get(schema_id) or Undecodable(Reason.UNKNOWN_SCHEMA, schema_id, "no such id")


def test_the_prefix_is_a_zero_byte_and_a_big_endian_id() -> None:
    found = registryformat.split(b"\x00\x00\x00\x01\x02rest")
    assert found is not None
    assert found[0] == 258
    assert bytes(found[1]) == b"rest"
    assert registryformat.split(b"\x01\x00\x00\x01\x02rest") is None
    assert registryformat.split(b"\x00\x00") is None


@pytest.mark.parametrize(
    ("payload", "indexes", "rest"),
    [(b"\x00m", (0,), b"m"), (b"\x02\x02m", (1,), b"m"), (b"\x04\x02\x04m", (1, 2), b"m")],
)
def test_protobuf_message_indexes_are_zigzag_varints(payload: bytes, indexes: tuple[int, ...], rest: bytes) -> None:
    found, body = registryformat.message_indexes(memoryview(payload))
    assert (found, bytes(body)) == (indexes, rest)


def test_cut_message_indexes_are_a_payload_error() -> None:
    with pytest.raises(registryformat.PayloadError):
        registryformat.message_indexes(memoryview(b"\x04\x02"))


def test_an_avro_value_becomes_a_decoded_record_of_json() -> None:
    schema = compile_schema("AVRO", POINT, [])
    record = Record(0, 3, avro({"x": 2**63 - 1, "tag": None}), key=b"k")
    decoded = decode_record(record, lookup({7: schema}))
    assert decoded.value == b'{"x":9223372036854775807,"tag":null}'
    assert (decoded.value_schema, decoded.key, decoded.undecodable) == ((7, "AVRO"), b"k", None)
    assert schema_ids([record]) == {7}


def test_trailing_bytes_after_an_avro_record_are_a_bad_payload() -> None:
    decoded = decode_record(
        Record(0, 3, avro({"x": 1, "tag": "a"}) + b"\x00"), lookup({7: compile_schema("AVRO", POINT, [])})
    )
    assert decoded.undecodable is not None
    assert decoded.undecodable.reason is Reason.BAD_PAYLOAD


def test_protobuf_from_proto_text_and_from_a_base64_descriptor_read_alike() -> None:
    from_text = compile_schema("PROTOBUF", PROTO, [])
    file = descriptor_pb2.FileDescriptorProto(name="b.proto", package="t", syntax="proto3")
    file.dependency.append("google/protobuf/timestamp.proto")
    message = file.message_type.add(name="T")
    message.field.add(name="at", number=1, type=11, type_name=".google.protobuf.Timestamp", label=1)
    from_descriptor = compile_schema("PROTOBUF", base64.b64encode(file.SerializeToString()).decode(), [])
    assert from_text.decode(memoryview(b"\x00\x08\x05")) == b'{"n":"5"}'
    assert from_text.decode(memoryview(b"\x02\x02\x0a\x03\x0a\x01z")) == b'{"c":{"s":"z"}}'  # [1]: B
    assert from_text.decode(memoryview(b"\x04\x02\x00\x0a\x01z")) == b'{"s":"z"}'  # [1, 0]: B.C
    stamp = timestamp_pb2.Timestamp(seconds=1).SerializeToString()
    assert (
        from_descriptor.decode(memoryview(b"\x00\x0a" + bytes([len(stamp)]) + stamp))
        == b'{"at":"1970-01-01T00:00:01Z"}'
    )


def test_a_schema_that_does_not_compile_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        compile_schema("PROTOBUF", 'syntax = "proto3"; message A { Missing m = 1; }', [])
    with pytest.raises(SchemaError):
        compile_schema("XML", "<a/>", [])


def test_an_undecodable_record_is_its_own_event_with_the_value_in_base64() -> None:
    value = b"\x00\x00\x00\x00\x09junk"
    decoded = decode_record(Record(1, 4, value), lookup({}))
    (event,) = Parser().feed(record_event(decoded, id="5", type_header=None))
    assert event.type == "undecodable"
    assert orjson.loads(event.data) == {"reason": "unknown_schema", "schema_id": 9, "message": "no such id",
                                        "value": base64.b64encode(value).decode()}  # fmt: skip
    (enveloped,) = Parser().feed(envelope_event("t", ParsedRecord(decoded), id="5", type_header=None))
    body = orjson.loads(enveloped.data)
    assert (enveloped.type, body["value"], body["value_encoding"]) == (
        "undecodable",
        base64.b64encode(value).decode(),
        "base64",
    )
    assert body["undecodable"]["reason"] == "unknown_schema"


def test_filters_match_decoded_values_and_never_undecodable_ones() -> None:
    schema = compile_schema("AVRO", POINT, [])
    good = decode_record(Record(0, 1, avro({"x": 5, "tag": "a"})), lookup({7: schema}))
    # a value without the prefix that reads as JSON is still undecodable: no filter sees it
    plain = DecodedRecord(0, 2, 0, (), None, b'{"x": 5}', undecodable=Undecodable(Reason.NO_PREFIX, None, ""))
    where = parse_filter([("where", "x==5")])
    assert where.matches(ParsedRecord(good))
    assert not where.matches(ParsedRecord(plain))


def test_a_decoded_key_is_json_in_the_envelope_and_text_for_key_filters() -> None:
    key_schema = compile_schema("AVRO", '"string"', [])
    key = b"\x00\x00\x00\x00\x08" + b"\x0eorder-7"  # Avro string: zigzag length 7, then the bytes
    decoded = decode_record(Record(0, 1, None, key=key), lookup({8: key_schema}))
    assert decoded.key == b"order-7"
    assert parse_filter([("key", "order-7")]).matches(ParsedRecord(decoded))
    (event,) = Parser().feed(envelope_event("t", ParsedRecord(decoded), id="1", type_header=None))
    body = orjson.loads(event.data)
    assert (body["key"], body["key_schema"], body["tombstone"]) == ("order-7", {"id": 8, "type": "AVRO"}, True)


def test_a_schema_id_header_frames_the_bare_payload_of_values_and_keys() -> None:
    """The header form: ``__value_schema_id`` / ``__key_schema_id`` hold the magic byte and the id
    (and for Protobuf the message indexes); the value is the payload alone, as confluent-kafka reads it."""
    point = compile_schema("AVRO", POINT, [])
    proto = compile_schema("PROTOBUF", PROTO, [])
    bare = avro({"x": 3, "tag": None})[registryformat.PREFIX_LENGTH :]
    key = b"\x0eorder-7"  # an Avro string, its id in the key's header
    headers = [("__value_schema_id", b"\x00\x00\x00\x00\x07"), ("__key_schema_id", b"\x00\x00\x00\x00\x08")]
    record = Record(0, 1, bare, key=key, headers=headers)
    schemas = lookup({7: point, 8: compile_schema("AVRO", '"string"', []), 9: proto})
    decoded = decode_record(record, schemas)
    assert (decoded.value, decoded.value_schema) == (b'{"x":3,"tag":null}', (7, "AVRO"))
    assert (decoded.key, decoded.key_schema) == (b"order-7", (8, "AVRO"))
    assert schema_ids([record]) == {7, 8}
    # Protobuf: the header's message indexes ([1, 0]: B.C) pick the message of the bare payload
    nested = decode_record(
        Record(0, 2, b"\x0a\x01z", headers=[("__value_schema_id", b"\x00\x00\x00\x00\x09\x04\x02\x00")]), schemas
    )
    assert nested.value == b'{"s":"z"}'


@pytest.mark.parametrize(
    ("header", "reason", "words"),
    [(b"\x01" + bytes(range(16)), Reason.UNKNOWN_SCHEMA, "GUID 00010203-0405-0607-0809-0a0b0c0d0e0f"),
     (b"\x07junk", Reason.NO_PREFIX, "neither")],
)  # fmt: skip
def test_a_schema_guid_or_junk_in_the_header_is_undecodable(header: bytes, reason: Reason, words: str) -> None:
    decoded = decode_record(Record(0, 1, b"\x06", headers=[("__value_schema_id", header)]), lookup({}))
    assert decoded.undecodable is not None
    assert (decoded.undecodable.reason, decoded.undecodable.schema_id) == (reason, None)
    assert words in decoded.undecodable.message
    assert decoded.value == b"\x06"


def chain(length: int) -> Schema:
    """M0 { M1 n = 1; } … M{length-1} { int32 n = 1; }, as a registry serves a descriptor."""
    file = descriptor_pb2.FileDescriptorProto(name="chain.proto", package="c", syntax="proto3")
    for number in range(length):
        message = file.message_type.add(name=f"M{number}")
        last = number == length - 1
        kind = {"type": 5} if last else {"type": 11, "type_name": f".c.M{number + 1}"}  # int32, or the next message
        message.field.add(name="n", number=1, label=1, **kind)
    return compile_schema("PROTOBUF", base64.b64encode(file.SerializeToString()).decode(), [])


def nested(depth: int) -> bytes:
    """A chain's value ``depth`` messages deep: field 1 of each holds the next."""
    body = b""
    for _ in range(depth):
        length, size = len(body), b""
        while length >= 0x80:
            size, length = size + bytes([length & 0x7F | 0x80]), length >> 7
        body = b"\x0a" + size + bytes([length]) + body
    return b"\x00\x00\x00\x00\x0b\x00" + body  # schema 11, message [0]


def test_a_chain_of_250_message_types_decodes_and_a_value_nested_too_deep_is_a_bad_payload() -> None:
    schemas = lookup({11: chain(250)})
    for _ in range(2):  # the writers are made by the first record, used by the next
        assert decode_record(Record(0, 1, nested(0)), schemas).value == b"{}"
    assert decode_record(Record(0, 2, nested(99)), schemas).value == b'{"n":' * 99 + b"{}" + b"}" * 99
    too_deep = decode_record(Record(0, 3, nested(101)), schemas).undecodable  # upb reads 100 levels at most
    assert too_deep is not None
    assert too_deep.reason is Reason.BAD_PAYLOAD


def test_a_chain_of_3000_message_types_never_stops_the_reader() -> None:
    # protobuf's GetMessageClass recurses once per level: the first record may be undecodable, none raises
    schemas = lookup({11: chain(3000)})
    for offset in range(3):
        decoded = decode_record(Record(0, offset, nested(2)), schemas)
        assert decoded.value == b'{"n":{"n":{}}}' or (
            decoded.undecodable is not None and decoded.undecodable.reason is Reason.BAD_SCHEMA
        )
    assert decoded.value == b'{"n":{"n":{}}}'


class Failing:
    """A schema whose decoding fails unforeseen: what a bug of the bridge with one schema looks like."""

    kind = "PROTOBUF"

    def decode(self, payload: memoryview) -> bytes:
        raise RecursionError("maximum recursion depth exceeded")


def test_a_schema_whose_decoding_fails_unforeseen_is_a_bad_schema_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    value, key = b"\x00\x00\x00\x00\x0c\x00", b"\x00\x00\x00\x00\x0c\x02"
    with caplog.at_level("ERROR", logger="bridge.schemas"):
        first, second = (decode_record(Record(0, offset, value, key=key), lookup({12: Failing()})) for offset in (1, 2))
    assert first.undecodable is not None
    assert (first.undecodable.reason, first.undecodable.schema_id) == (Reason.BAD_SCHEMA, 12)
    assert "RecursionError" in first.undecodable.message
    assert (first.value, first.key, second.undecodable) == (value, key, first.undecodable)  # the key left as it is
    assert [record.getMessage() for record in caplog.records] == ["schema 12: decoding failed"]
