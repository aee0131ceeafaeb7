"""Avro payloads as JSON (the mapping table is in docs/schemas.md).

fastavro's ``schemaless_reader`` reads the payload; orjson writes the result,
with ``_json_default`` for the two kinds it has no JSON form for. So the
mapping is: records and maps are objects, arrays are arrays, enums and uuids
strings, a union the value of its branch (so ``["null", T]`` is the value or
null, with no wrapper), bytes and fixed standard base64, decimals strings of
their exact digits (never a float), dates ``YYYY-MM-DD``, times
``HH:MM:SS[.ffffff]``, timestamps RFC 3339 in UTC with ``Z``, local
timestamps the same without a zone. ints and longs are JSON numbers with all
their digits; a NaN or infinite float is null, since JSON has neither.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader
from fastavro.types import Schema

from bridge.wire.registryformat import PayloadError

_OPTIONS = orjson.OPT_UTC_Z


def _json_default(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal):
        return format(value, "f")  # plain digits: str() would write 1E-7
    raise TypeError(f"no JSON form for {type(value).__name__}")


class AvroSchema:
    """One parsed Avro schema; ``references`` are the schemas it names, each
    one read before those that use it (the registry's order)."""

    kind = "AVRO"

    def __init__(self, text: str, references: Sequence[str] = ()) -> None:
        named: dict[str, Any] = {}
        for reference in references:
            parse_schema(orjson.loads(reference), named_schemas=named)
        self._schema: Schema = parse_schema(orjson.loads(text), named_schemas=named)

    def decode(self, payload: memoryview) -> bytes:
        stream = io.BytesIO(payload)
        try:
            value = schemaless_reader(stream, self._schema, None)
        except (EOFError, ValueError, IndexError, KeyError, UnicodeDecodeError, OverflowError) as error:
            raise PayloadError(f"not Avro of this schema: {error}") from None
        if stream.tell() != len(payload):
            raise PayloadError(f"{len(payload) - stream.tell()} byte(s) after the Avro record")
        return orjson.dumps(value, default=_json_default, option=_OPTIONS)
