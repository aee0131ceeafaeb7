"""Protobuf messages as JSON objects, by a writer made once per message type.

``json_format.MessageToDict`` finds each field's descriptor and branches on
its type for every field of every message: most of the time of decoding a
small message. A writer does that once per type: from the descriptor it
builds the source of one Python function that reads the fields as
attributes and returns the JSON object, and compiles it. The source is made
of the descriptor's field names (checked identifiers, written with repr) and
fixed templates, nothing else of the schema.

The mapping is MessageToDict's with ``preserving_proto_field_name`` and
``always_print_fields_with_no_presence`` (tests/unit/wire/test_protowriter.py
compares the two): fields without presence always, those with presence (set
message fields, ``optional``, oneof members, proto2 fields) when set, after
them. Any, Struct, Value, ListValue and message types with extensions are
left to MessageToDict (their JSON depends on more than their descriptor).
"""

from __future__ import annotations

import binascii
import keyword
import math
import struct
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message

Writer = Callable[[Message], Any]

# Their JSON is a string of the message's own making (RFC 3339, "1.5s", "a,b")
_TO_JSON_STRING = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
_BY_JSON_FORMAT = {
    "google.protobuf.Any",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
}
# By full name, not by file (as MessageToDict does): any schema may name its own file google/protobuf/wrappers.proto
_WRAPPERS = {f"google.protobuf.{kind}Value" for kind in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32",
                                                         "Bool", "String", "Bytes")}  # fmt: skip
_INT64 = {FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64}


def _nonfinite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


_FLOAT32 = struct.Struct("<f")


def _float(value: float) -> float | str:
    """A 32-bit float as its shortest decimal that reads back the same: what MessageToDict
    writes (type_checkers.ToShortestFloat), at half its cost (no format spec built per try)."""
    if value - value != 0:
        return _nonfinite(value)
    for digits in ("%.6g", "%.7g", "%.8g"):
        rounded = float(digits % value)  # % is quicker than format()
        # equal: the same double, so the same float; else the float it reads back as, 32 bits
        if rounded == value or _FLOAT32.unpack(_FLOAT32.pack(rounded))[0] == value:
            return rounded
    return float("%.9g" % value)  # noqa: UP031  # 9 digits always read back as the same 32-bit float


class Writers:
    """The writers of one descriptor pool's message types, made when first asked for."""

    def __init__(self, pool: DescriptorPool) -> None:
        def by_json_format(message: Message) -> Any:
            return json_format.MessageToDict(
                message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True,
                descriptor_pool=pool,
            )  # fmt: skip

        self._namespace: dict[str, Any] = {
            "_by_json_format": by_json_format, "_nonfinite": _nonfinite, "_float": _float,
            "_b2a": binascii.b2a_base64,
        }  # fmt: skip
        self._functions: dict[str, str] = {}  # message type's full name → its writer's name in the namespace
        # of the build under way (_build): the names, types and enum tables it has yet to make
        self._pending: dict[str, str] = {}
        self._todo: list[Descriptor] = []
        self._tables: dict[str, dict[int, str]] = {}

    def of(self, descriptor: Descriptor) -> Writer:
        name = self._functions.get(descriptor.full_name) or self._build(descriptor)
        writer: Writer = self._namespace[name]
        return writer

    def _build(self, descriptor: Descriptor) -> str:
        """Makes the writers of ``descriptor`` and of the message types it reaches that have none yet.

        From a worklist, not by recursion: a schema may nest types hundreds deep (Python's stack
        is 1,000 frames). The names go into ``_functions`` only once every writer is compiled, so
        a build that fails leaves no name of a writer that was never made, and fails the same way
        when asked again."""
        self._pending, self._todo, self._tables = {}, [], {}
        try:
            name = self._name(descriptor)
            code = []
            while self._todo:
                message = self._todo.pop()
                source = f"def {self._pending[message.full_name]}(m):\n" + self._body(message)
                code.append(compile(source, f"<JSON writer of {message.full_name}>", "exec"))
            self._namespace.update(self._tables)
            for function in code:
                exec(function, self._namespace)
            self._functions.update(self._pending)
        finally:
            self._pending, self._todo, self._tables = {}, [], {}
        return name

    def _name(self, descriptor: Descriptor) -> str:
        """The name of a message type's writer: one made, or one this build will make (named on
        first sight, so a recursive type's writer calls itself by it)."""
        name = self._functions.get(descriptor.full_name) or self._pending.get(descriptor.full_name)
        if name is None:
            name = self._pending[descriptor.full_name] = f"_w{len(self._functions) + len(self._pending)}"
            self._todo.append(descriptor)
        return name

    def _body(self, descriptor: Descriptor) -> str:
        full_name = descriptor.full_name
        if full_name in _BY_JSON_FORMAT or descriptor.extension_ranges:
            return "    return _by_json_format(m)\n"
        if full_name in _TO_JSON_STRING:
            return "    return m.ToJsonString()\n"
        if full_name in _WRAPPERS:
            return f"    return {self._value(descriptor.fields_by_name['value'], 'm.value')}\n"
        always = [f for f in descriptor.fields if not f.has_presence]
        items = ", ".join(f"{f.name!r}: {self._field(f)}" for f in always)
        lines = [f"    d = {{{items}}}\n"]
        if any(f.has_presence for f in descriptor.fields):
            lines.append("    has = m.HasField\n")
        done = set()
        for f in descriptor.fields:
            oneof = f.containing_oneof
            if not f.has_presence or f.name in done:
                continue
            if oneof is None or len(oneof.fields) == 1:  # a single field: optional, or proto2
                lines.append(f"    if has({f.name!r}): d[{f.name!r}] = {self._field(f)}\n")
                continue
            lines.append(f"    o = m.WhichOneof({oneof.name!r})\n")  # one look for the fields of the oneof
            for number, member in enumerate(oneof.fields):
                branch = "if" if number == 0 else "elif"
                lines.append(f"    {branch} o == {member.name!r}: d[{member.name!r}] = {self._field(member)}\n")
                done.add(member.name)
        return "".join(lines) + "    return d\n"

    def _field(self, field: FieldDescriptor) -> str:
        """The expression of a field of ``m``: the JSON of its value, its list or its map."""
        plain = field.name.isidentifier() and not keyword.iskeyword(field.name)  # not so: "from"
        read = f"m.{field.name}" if plain else f"getattr(m, {field.name!r})"
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            key_field, value_field = message.fields_by_name["key"], message.fields_by_name["value"]
            if key_field.type == FieldDescriptor.TYPE_BOOL:
                key = "('true' if k else 'false')"
            else:
                key = "k" if key_field.cpp_type == FieldDescriptor.CPPTYPE_STRING else "str(k)"
            value = self._value(value_field, "e")
            # an empty container costs less to test than to copy
            copy = "dict(c.items())" if (key, value) == ("k", "e") else f"{{{key}: {value} for k, e in c.items()}}"
            return f"({copy} if (c := {read}) else {{}})"
        if field.is_repeated:
            value = self._value(field, "e")
            return f"{read}[:]" if value == "e" else f"([{value} for e in c] if (c := {read}) else [])"
        return self._value(field, read)

    def _value(self, field: FieldDescriptor, read: str) -> str:
        """The expression of one value of ``field``, read by ``read`` (evaluated once)."""
        cpp, message, enum = field.cpp_type, field.message_type, field.enum_type
        if message is not None:
            return f"{self._name(message)}({read})"
        if enum is not None:
            if enum.full_name == "google.protobuf.NullValue":
                return "None"
            names = f"_names{len(self._namespace) + len(self._tables)}"
            # allow_alias gives a number several names: the first declared, as MessageToDict writes (set last)
            self._tables[names] = {value.number: value.name for value in reversed(enum.values)}
            return f"{names}.get(x := {read}, x)"  # an unknown number stays a number
        if field.type == FieldDescriptor.TYPE_BYTES:
            return f"(_b2a(x, newline=False).decode() if (x := {read}) else '')"
        if cpp in _INT64:
            # a string, as the proto3 mapping says (a browser's numbers hold 53 bits); f"" is quicker than str()
            return f'f"{{{read}}}"'
        if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
            return f"(x if (x := {read}) - x == 0 else _nonfinite(x))"
        if cpp == FieldDescriptor.CPPTYPE_FLOAT:
            # the usual case inline, 6 digits that give the same double back; else _float
            return f"(r if (r := float('%.6g' % (x := {read}))) == x and x - x == 0 else _float(x))"
        return read  # string, bool, 32-bit integers: as they are
