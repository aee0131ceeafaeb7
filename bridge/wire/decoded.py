"""A record of a schema topic after decoding (schemas.py decodes, events.py and formats.py encode it).

Its value is the decoded JSON text, or, when it could not be decoded, the
value unchanged with :attr:`DecodedRecord.undecodable` saying why: such a
record is an event of type ``undecodable`` whose data is
``{"reason", "schema_id", "message", "value"}`` (the value in standard base64).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import orjson

UNDECODABLE = "undecodable"


class Reason(enum.StrEnum):
    """Why a value was not decoded: the ``reason`` of an ``undecodable`` event."""

    NO_PREFIX = "no_schema_prefix"  # the value does not start with the wire format's 0 byte and id
    UNKNOWN_SCHEMA = "unknown_schema"  # the registry has no schema of that id
    REGISTRY_UNAVAILABLE = "registry_unavailable"  # no answer, or an error, after the retries
    REGISTRY_REFUSED = "registry_refused"  # 401/403: the bridge's credentials are not accepted
    BAD_SCHEMA = "bad_schema"  # a schema type or text the bridge cannot use
    BAD_PAYLOAD = "bad_payload"  # the payload does not read as its schema


class SchemaRef(NamedTuple):
    id: int
    kind: str


@dataclass(frozen=True, slots=True)
class Undecodable:
    reason: Reason
    schema_id: int | None
    message: str


@dataclass(slots=True)
class DecodedRecord:
    """A KafkaRecord whose value (and key) are decoded JSON text, or whose value could not be decoded."""

    partition: int
    offset: int
    timestamp: int
    headers: Sequence[tuple[str, bytes]]
    key: bytes | None  # for key filters: a decoded string key's text, another decoded key's JSON text
    value: bytes | None  # the decoded JSON text; unchanged when undecodable; None for a tombstone
    key_json: bytes | None = None  # the decoded key as JSON text, when it was decoded
    key_schema: SchemaRef | None = None
    value_schema: SchemaRef | None = None
    undecodable: Undecodable | None = None


def undecodable_data(record: DecodedRecord) -> bytes:
    """The data of an ``undecodable`` event: why, and the value in base64."""
    problem = record.undecodable
    assert problem is not None
    assert record.value is not None
    return orjson.dumps({"reason": problem.reason, "schema_id": problem.schema_id, "message": problem.message,
                         "value": base64.b64encode(record.value).decode()})  # fmt: skip
