"""Records of schema topics, decoded to JSON: what the rest of the bridge serves.

A record of a ``--schema-topics`` topic becomes a :class:`DecodedRecord`
before it is published: its value the decoded JSON text (so the default
event's data, the filters and the envelope all see JSON, parsed at most once
per record like any JSON value), or, when it cannot be decoded, its value
unchanged and :attr:`DecodedRecord.undecodable` saying why. Such a record is
an event of type ``undecodable`` (events.py), never dropped. A key with the
prefix is decoded the same way; one that cannot be decoded is left as it is.
A value or key whose schema id is in its header (``__value_schema_id``,
``__key_schema_id``, registryformat.py) is read by that header, as
confluent-kafka's deserializer reads it.

The schemas themselves come from the registry (kafka/registry.py): this
module only reads bytes with a schema it is given.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import orjson

from bridge.wire import registryformat
from bridge.wire.avrojson import AvroSchema
from bridge.wire.decoded import DecodedRecord, Reason, SchemaRef, Undecodable
from bridge.wire.events import KafkaRecord, header_value
from bridge.wire.protojson import ProtobufSchema, SchemaError, descriptor_set
from bridge.wire.registryformat import PayloadError


class Schema(Protocol):
    kind: str  # the registry's schemaType: AVRO, PROTOBUF, JSON

    def decode(self, payload: memoryview) -> bytes:
        """The payload as JSON text; PayloadError when it is not of this schema."""
        ...


class JsonSchema:
    """JSON Schema: the payload is JSON already and is sent as the producer wrote it (every digit kept).
    It is checked to be JSON, not validated against the schema: the producer's serializer did that."""

    kind = "JSON"

    def decode(self, payload: memoryview) -> bytes:
        text = bytes(payload)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise PayloadError(f"not JSON: {error}") from None
        return text


def compile_schema(kind: str, text: str, references: Sequence[tuple[str, str]]) -> Schema:
    """The schema of a registry answer; ``references`` are (name, text), dependencies first."""
    if kind == "AVRO":
        try:
            return AvroSchema(text, [reference for _, reference in references])
        except (ValueError, TypeError, KeyError) as error:  # fastavro's SchemaParseError is a ValueError
            raise SchemaError(f"not a usable Avro schema: {error}") from None
    if kind == "PROTOBUF":
        return ProtobufSchema(*descriptor_set(text, dict(references)))
    if kind == "JSON":
        return JsonSchema()
    raise SchemaError(f"schema type {kind[:32]!r} is not supported")


# What the fetch step found for an id: the schema, or why there is none.
Lookup = Callable[[int], "Schema | Undecodable"]


# One SchemaRef per schema, not one per record (a NamedTuple is built in Python)
_schema_ref = functools.lru_cache(maxsize=1024)(SchemaRef)
_NO_PREFIX = Undecodable(Reason.NO_PREFIX, None, "the value has no Schema Registry prefix")

logger = logging.getLogger("bridge.schemas")
# The ids of the schemas whose decoding failed unforeseen: each logged once, not once per record
_failed_schemas: set[int] = set()
_MAX_FAILED_SCHEMAS = 10_000


def _framed(raw: bytes, header: bytes | None) -> tuple[int, memoryview] | Undecodable | None:
    """The schema id and the payload (for Protobuf: the message indexes first) of a value or key,
    from its prefix, or from its schema id header when it has one (as confluent-kafka reads);
    None when it has neither."""
    if header is None:
        return registryformat.split(raw)
    found = registryformat.split(header)
    if found is None:
        if header[:1] == bytes([registryformat.GUID_MAGIC]) and len(header) >= registryformat.GUID_LENGTH:
            guid = uuid.UUID(bytes=header[1 : registryformat.GUID_LENGTH])
            message = f"the schema id header names schema GUID {guid}: only schema ids are looked up"
            return Undecodable(Reason.UNKNOWN_SCHEMA, None, message)
        return Undecodable(Reason.NO_PREFIX, None, "the schema id header holds neither a schema id nor a GUID")
    schema_id, indexes = found
    return schema_id, memoryview(bytes(indexes) + raw)


def schema_ids(records: Iterable[KafkaRecord]) -> set[int]:
    """The ids the values and keys of ``records`` name."""
    ids = set()
    for record in records:
        headers = record.headers
        for raw, name in ((record.value, registryformat.VALUE_HEADER), (record.key, registryformat.KEY_HEADER)):
            if raw is not None:
                found = _framed(raw, header_value(headers, name))
                if isinstance(found, tuple):
                    ids.add(found[0])
    return ids


def _decode(raw: bytes, header: bytes | None, lookup: Lookup) -> tuple[bytes, SchemaRef] | Undecodable:
    framed = _framed(raw, header)
    if framed is None:
        return _NO_PREFIX
    if isinstance(framed, Undecodable):
        return framed
    schema_id, payload = framed
    schema = lookup(schema_id)
    if isinstance(schema, Undecodable):
        return schema
    try:
        return schema.decode(payload), _schema_ref(schema_id, schema.kind)
    except PayloadError as error:
        return Undecodable(Reason.BAD_PAYLOAD, schema_id, str(error))
    except Exception as error:  # a failure of the bridge with this schema: its topic and the reader go on
        if schema_id not in _failed_schemas:
            if len(_failed_schemas) >= _MAX_FAILED_SCHEMAS:
                _failed_schemas.clear()  # bounded: an id may be logged again after as many others
            _failed_schemas.add(schema_id)
            logger.error("schema %d: decoding failed", schema_id, exc_info=error)
        return Undecodable(Reason.BAD_SCHEMA, schema_id, f"the bridge cannot decode with this schema: {error!r}"[:300])


def decode_record(record: KafkaRecord, lookup: Lookup) -> DecodedRecord:
    decoded = DecodedRecord(record.partition, record.offset, record.timestamp, record.headers, record.key, None)
    headers = record.headers
    if record.key is not None:
        key = _decode(record.key, header_value(headers, registryformat.KEY_HEADER), lookup)
        if not isinstance(key, Undecodable):
            decoded.key_json, decoded.key_schema = key
            text = orjson.loads(decoded.key_json) if decoded.key_json.startswith(b'"') else None
            decoded.key = text.encode() if isinstance(text, str) else decoded.key_json
    if record.value is None:
        return decoded
    value = _decode(record.value, header_value(headers, registryformat.VALUE_HEADER), lookup)
    if isinstance(value, Undecodable):
        decoded.value, decoded.undecodable = record.value, value
    else:
        decoded.value, decoded.value_schema = value
    return decoded
