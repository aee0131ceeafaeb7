"""The Schema Registry wire format of a Kafka key or value.

A value written by a Confluent-compatible serializer (Confluent's, Apicurio's
in its Confluent mode, Kafka Connect, Debezium, Kafka Streams) is::

    0x00 | schema id, 4 bytes big-endian | payload

and for Protobuf the payload starts with the path of the message within its
.proto file: a zig-zag varint count, then that many zig-zag varint indexes
(the message's position among the file's top-level messages, then among each
level's nested ones); the single byte 0 is the short form of ``[0]``, the
file's first message.

Newer serializers may put the schema's id in a header instead
(``__value_schema_id``, ``__key_schema_id``), the value then being the bare
payload. The header holds what the prefix would: the magic byte and the
schema id, then for Protobuf the message indexes. confluent-kafka's reader
takes magic 0 with the 4-byte id there, and magic 1 with a 16-byte schema
GUID, which is what its header serializer writes.
"""

from __future__ import annotations

import struct

MAGIC = 0
PREFIX_LENGTH = 5
GUID_MAGIC = 1  # in a header: the schema's GUID, 16 bytes, instead of its id
GUID_LENGTH = 17  # the magic byte and the 16 bytes of the GUID
VALUE_HEADER = "__value_schema_id"
KEY_HEADER = "__key_schema_id"
_ID = struct.Struct(">xI")  # after the magic byte: one C call, not a slice and int.from_bytes
MAX_INDEXES = 64  # nesting depth of a message: more is a corrupt payload, not a schema


class PayloadError(ValueError):
    """The bytes after the prefix are not what the schema says."""


def split(value: bytes) -> tuple[int, memoryview] | None:
    """The schema id and the payload, or None when ``value`` has no prefix."""
    if len(value) < PREFIX_LENGTH or value[0] != MAGIC:
        return None
    return _ID.unpack_from(value)[0], memoryview(value)[PREFIX_LENGTH:]


def _varint(data: memoryview, start: int) -> tuple[int, int]:
    """A zig-zag varint at ``start``: its value and the offset after it."""
    result = shift = 0
    position = start
    while True:
        if position >= len(data) or shift > 63:
            raise PayloadError("the message indexes are cut short")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position


def message_indexes(payload: memoryview) -> tuple[tuple[int, ...], memoryview]:
    """A Protobuf payload's message indexes (``(0,)`` for the short form) and the message bytes."""
    count, position = _varint(payload, 0)
    if count == 0:
        return (0,), payload[position:]
    if not 0 < count <= MAX_INDEXES:
        raise PayloadError(f"{count} message indexes")
    indexes = []
    for _ in range(count):
        index, position = _varint(payload, position)
        if index < 0:
            raise PayloadError(f"message index {index}")
        indexes.append(index)
    return tuple(indexes), payload[position:]
