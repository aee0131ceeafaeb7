"""Records in the Schema Registry wire format, written by confluent-kafka's own serializers.

The serializers register their schemas in the test session's registry
(Apicurio, through its Confluent-compatible API) and frame the payload as
every Confluent-compatible producer does; the records then go to Kafka like
any other bytes. The Protobuf message classes are generated from
``protos/*.proto`` by protoc (grpcio-tools), once per session.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from grpc_tools import protoc

PROTOS = Path(__file__).parent / "protos"


def generated_protos() -> ModuleType:
    """The module of bridgetest_shop.proto (its import, bridgetest_money, generated beside it)."""
    if "bridgetest_shop_pb2" not in sys.modules:
        out = tempfile.mkdtemp(prefix="bridge-test-protos-")
        files = sorted(path.name for path in PROTOS.glob("*.proto"))
        well_known = Path(protoc.__file__).parent / "_proto"
        assert protoc.main(["protoc", f"-I{PROTOS}", f"-I{well_known}", f"--python_out={out}", *files]) == 0
        sys.path.insert(0, out)
    return importlib.import_module("bridgetest_shop_pb2")


class Serializers:
    """confluent-kafka's serializers, pointed at one registry."""

    def __init__(self, url: str) -> None:
        self.client = SchemaRegistryClient({"url": url})

    def close(self) -> None:
        self.client.close()

    def avro(self, schema: str, topic: str, value: object, field: MessageField = MessageField.VALUE) -> bytes:
        serializer = AvroSerializer(self.client, schema)
        return bytes(serializer(value, SerializationContext(topic, field)))

    def protobuf(self, message: Any, topic: str) -> bytes:
        serializer = ProtobufSerializer(type(message), self.client, {"use.deprecated.format": False})
        return bytes(serializer(message, SerializationContext(topic, MessageField.VALUE)))

    def json(self, schema: str, topic: str, value: object) -> bytes:
        serializer = JSONSerializer(schema, self.client)
        return bytes(serializer(value, SerializationContext(topic, MessageField.VALUE)))
