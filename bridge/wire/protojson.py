"""Protobuf payloads as JSON (the mapping table is in docs/schemas.md).

A schema and the schemas it imports (the registry's references) come as
.proto text, compiled by protoc (which grpcio-tools carries as a Python
module, with the well-known types, google/protobuf/*.proto), or as base64
FileDescriptorProtos, used as they are. Each schema gets a pool of
descriptors of its own, so two schemas may define the same names differently. The message indexes of each payload
pick its message.

JSON is the proto3 JSON mapping (google.protobuf.json_format's, written by
the per-type writers of protowriter.py), with two choices: field names as
written in the .proto (not lowerCamelCase), and fields at their default
value written too, so every message of one type has the same fields. As
the mapping says, 64-bit integers are strings (a browser's numbers hold 53
bits), bytes base64, enums their names, Timestamp and Duration RFC 3339 and
``"1.5s"`` strings, wrappers their value, Struct and Value the JSON they
hold, Any an object with ``@type``.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import orjson

# The well-known types, imported so that the default pool has them for schemas given as descriptors
from google.protobuf import (  # noqa: F401
    any_pb2,
    api_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    json_format,
    message_factory,
    source_context_pb2,
    struct_pb2,
    timestamp_pb2,
    type_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from grpc_tools import protoc

from bridge.wire.protowriter import Writer, Writers
from bridge.wire.registryformat import PayloadError, message_indexes

MAIN_FILE = "schema.proto"  # the name the schema's own text is compiled under
_INCLUDE = str(Path(protoc.__file__).parent / "_proto")  # the well-known types


class SchemaError(ValueError):
    """A schema that cannot be compiled; the message says why."""


def _serialized(source: str) -> descriptor_pb2.FileDescriptorProto | None:
    """The file of a schema stored as a base64 FileDescriptorProto (what Confluent's Python
    serializer registers, and Apicurio serves back as it was given), or None for .proto text."""
    try:
        return descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(source, validate=True))
    except (binascii.Error, ValueError, DecodeError):  # .proto text has spaces and semicolons: never base64
        return None


def descriptor_set(text: str, imports: Mapping[str, str]) -> tuple[bytes, str]:
    """A serialized FileDescriptorSet of the schema ``text`` and all it imports,
    each file after those it imports, and the name of the schema's own file in
    it. ``imports`` maps each import path to its schema; each schema is .proto
    text or a base64 FileDescriptorProto; the .proto texts are compiled by protoc."""
    given: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    sources: dict[str, str] = {}
    main = MAIN_FILE
    for name, source in {**imports, MAIN_FILE: text}.items():
        file = _serialized(source)
        if file is None:
            sources[name] = source
        else:
            given[file.name] = file
            main = file.name if name == MAIN_FILE else main
    files = dict(given)
    if sources:
        files.update(_compile(sources, given))
    ordered: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    _add_in_order(main, files, ordered, ())
    return descriptor_pb2.FileDescriptorSet(file=ordered.values()).SerializeToString(), main


def _add_in_order(name: str, files: Mapping[str, descriptor_pb2.FileDescriptorProto],
                  ordered: dict[str, descriptor_pb2.FileDescriptorProto], path: tuple[str, ...]) -> None:  # fmt: skip
    if name in ordered:
        return
    if name in path:
        raise SchemaError(f"{name!r} imports itself")
    file = files.get(name)
    if file is None:
        try:  # a well-known type: imported below, so it is in the default pool
            file = descriptor_pb2.FileDescriptorProto()
            descriptor_pool.Default().FindFileByName(name).CopyToProto(file)
        except KeyError:
            raise SchemaError(f"import {name!r} is neither a reference of the schema nor a well-known type") from None
    for dependency in file.dependency:
        _add_in_order(dependency, files, ordered, (*path, name))
    ordered[name] = file


FileProtos = Mapping[str, descriptor_pb2.FileDescriptorProto]


def _compile(sources: Mapping[str, str], given: FileProtos) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    with tempfile.TemporaryDirectory(prefix="bridge-proto-") as folder:
        root = Path(folder).resolve()
        for name, source in sources.items():
            path = (root / name).resolve()
            if not path.is_relative_to(root):
                raise SchemaError(f"import path {name!r} leaves the schema's folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        arguments = [f"-I{root}", f"-I{_INCLUDE}", "--include_imports", f"--descriptor_set_out={root / 'out.desc'}"]
        if given:  # schemas given as descriptors are imports protoc reads as they are
            (root / "given.desc").write_bytes(descriptor_pb2.FileDescriptorSet(file=given.values()).SerializeToString())
            arguments.append(f"--descriptor_set_in={root / 'given.desc'}")
        # protoc writes its complaints to stderr; the return code is all that is needed here
        if protoc.main(["protoc", *arguments, *sources]) != 0:
            raise SchemaError("protoc could not compile the schema")
        compiled = descriptor_pb2.FileDescriptorSet.FromString((root / "out.desc").read_bytes())
    return {file.name: file for file in compiled.file}


Parse = Callable[[memoryview], Message]


class ProtobufSchema:
    kind = "PROTOBUF"

    def __init__(self, descriptor_set: bytes, main_file: str) -> None:
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
        self._pool = descriptor_pool.DescriptorPool()
        main = None
        for file in files.file:
            self._pool.Add(file)
            main = file if file.name == main_file else main
        if main is None:
            raise SchemaError(f"the descriptor set has no file {main_file!r}")
        # In the file's order: the message indexes count in it.
        prefix = f"{main.package}." if main.package else ""
        self._top = [self._pool.FindMessageTypeByName(prefix + message.name) for message in main.message_type]
        self._writers = Writers(self._pool)
        self._readers: dict[tuple[int, ...], tuple[Parse, Writer]] = {}

    def _reader(self, indexes: tuple[int, ...]) -> tuple[Parse, Writer]:
        """The parser and the JSON writer of the message the indexes name."""
        messages: list[Descriptor] = self._top
        descriptor: Descriptor | None = None
        for index in indexes:
            if index >= len(messages):
                raise PayloadError(f"message indexes {list(indexes)} name no message of the schema")
            descriptor = messages[index]
            messages = list(descriptor.nested_types)
        assert descriptor is not None  # message_indexes returns at least one
        # FromString reads any buffer, a memoryview too (no copy), though the stubs say bytes
        parse = cast(Parse, message_factory.GetMessageClass(descriptor).FromString)
        found = self._readers[indexes] = parse, self._writers.of(descriptor)
        return found

    def decode(self, payload: memoryview) -> bytes:
        if payload and payload[0] == 0:  # the short form of [0], the file's first message: most records
            indexes: tuple[int, ...] = (0,)
            body = payload[1:]
        else:
            indexes, body = message_indexes(payload)
        parse, write = self._readers.get(indexes) or self._reader(indexes)
        try:
            document = write(parse(body))
        except (DecodeError, json_format.Error, TypeError, ValueError) as error:
            # TypeError, json_format.Error: an Any whose type the schema does not know, a bad Timestamp
            raise PayloadError(f"not Protobuf of this schema: {error}") from None
        return orjson.dumps(document)
