"""Protobuf payloads as JSON (the mapping table is in docs/schemas.md).

A schema is compiled from its .proto text and the texts it imports (the
registry's references) by protoc, which grpcio-tools carries as a Python
module, with the well-known types (google/protobuf/*.proto) it ships; the
result is a pool of descriptors of the schema's own, so two schemas may
define the same names differently. The message indexes of each payload
pick its message.

JSON is the proto3 JSON mapping (google.protobuf.json_format), with two
choices: field names as written in the .proto (not lowerCamelCase), and
fields at their default value written too, so every message of one type
has the same fields. As the mapping says, 64-bit integers are strings (a
browser's numbers hold 53 bits), bytes base64, enums their names,
Timestamp and Duration RFC 3339 and ``"1.5s"`` strings, wrappers their
value, Struct and Value the JSON they hold, Any an object with ``@type``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from grpc_tools import protoc

from bridge.wire.registryformat import PayloadError, message_indexes

MAIN_FILE = "schema.proto"  # the name the schema's own text is compiled under
_INCLUDE = str(Path(protoc.__file__).parent / "_proto")  # the well-known types


class SchemaError(ValueError):
    """A schema that cannot be compiled; the message says why."""


def compile_proto(text: str, imports: Mapping[str, str]) -> bytes:
    """A serialized FileDescriptorSet of ``text`` and everything it imports,
    dependencies first; ``imports`` maps an import's path to its .proto text."""
    with tempfile.TemporaryDirectory(prefix="bridge-proto-") as folder:
        root = Path(folder)
        for name, source in {**imports, MAIN_FILE: text}.items():
            path = (root / name).resolve()
            if not path.is_relative_to(root.resolve()):
                raise SchemaError(f"import path {name!r} leaves the schema's folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        out = root / "schema.desc"
        # protoc writes its complaints to stderr; the return code is all that is needed here
        code = protoc.main(["protoc", f"-I{root}", f"-I{_INCLUDE}", "--include_imports",
                            f"--descriptor_set_out={out}", MAIN_FILE])  # fmt: skip
        if code != 0:
            raise SchemaError("protoc could not compile the schema")
        return out.read_bytes()


class ProtobufSchema:
    kind = "PROTOBUF"

    def __init__(self, descriptor_set: bytes, main_file: str = MAIN_FILE) -> None:
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
        self._classes: dict[tuple[int, ...], type[Message]] = {}

    def _message_class(self, indexes: tuple[int, ...]) -> type[Message]:
        found = self._classes.get(indexes)
        if found is None:
            messages: list[Descriptor] = self._top
            descriptor: Descriptor | None = None
            for index in indexes:
                if index >= len(messages):
                    raise PayloadError(f"message indexes {list(indexes)} name no message of the schema")
                descriptor = messages[index]
                messages = list(descriptor.nested_types)
            assert descriptor is not None  # message_indexes returns at least one
            found = self._classes[indexes] = message_factory.GetMessageClass(descriptor)
        return found

    def decode(self, payload: memoryview) -> bytes:
        indexes, body = message_indexes(payload)
        try:
            message = self._message_class(indexes).FromString(body.tobytes())
            document: Any = json_format.MessageToDict(
                message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True,
                descriptor_pool=self._pool,
            )  # fmt: skip
        except (DecodeError, json_format.Error, TypeError, ValueError) as error:
            # TypeError, json_format.Error: an Any whose type the schema does not know, a bad Timestamp
            raise PayloadError(f"not Protobuf of this schema: {error}") from None
        return orjson.dumps(document)
