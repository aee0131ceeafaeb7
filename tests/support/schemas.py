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
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_subject_name_strategy
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


def shop_order() -> Any:
    """An Order with every field set: each kind the JSON mapping names (SHOP_JSON in test_schemas.py)."""
    shop = generated_protos()
    money = importlib.import_module("bridgetest_money_pb2")
    order = shop.Order(id="o-1", i32=-7, i64=-(2**62), u64=2**64 - 1, s64=-3, f64=2**63, flag=True, ratio=0.5,
                       amount=19.99, blob=b"\x00\xfe", status=shop.Order.STATUS_PAID, tags=["a", "b"])  # fmt: skip
    order.lines.add(sku="X", quantity=2)
    order.counts["k"] = 4
    order.cash.CopyFrom(money.Money(currency="EUR", units=12))
    order.at.FromDatetime(datetime(2026, 12, 2, 6, 30, 0, 250000))
    order.took.FromMilliseconds(1500)
    order.extra.update({"n": 1, "list": ["x", None, True]})
    order.note.value = "hi"
    order.big.value = 2**60
    order.detail.Pack(money.Money(currency="USD", units=1))
    return order


class Serializers:
    """confluent-kafka's serializers, pointed at one registry."""

    def __init__(self, url: str) -> None:
        self.client = SchemaRegistryClient({"url": url})
        self._made: dict[tuple[object, ...], Any] = {}  # a serializer asks the registry on its first use only

    def close(self) -> None:
        self.client.close()

    def _serializer(self, kind: type[Any], schema: object, topic: str, field: MessageField) -> Any:
        key = (kind, schema, topic, field)
        if key not in self._made:
            # Subjects named {topic}-{key|value}, as Confluent's serializers have always done: the newer
            # default asks the registry's "associations" API first, which Apicurio 3.3.3 answers badly
            # (seen here: a 404, then connections closed or left without an answer, hanging the client).
            conf = {"subject.name.strategy": topic_subject_name_strategy}
            if kind is ProtobufSerializer:
                self._made[key] = ProtobufSerializer(schema, self.client, {**conf, "use.deprecated.format": False})
            elif kind is AvroSerializer:
                self._made[key] = AvroSerializer(self.client, schema, conf=conf)
            else:
                self._made[key] = JSONSerializer(schema, self.client, conf=conf)
        return self._made[key]

    def avro(self, schema: str | Schema, topic: str, value: object, field: MessageField = MessageField.VALUE) -> bytes:
        serializer = self._serializer(AvroSerializer, schema, topic, field)
        return bytes(serializer(value, SerializationContext(topic, field)))

    def protobuf(self, message: Any, topic: str) -> bytes:
        serializer = self._serializer(ProtobufSerializer, type(message), topic, MessageField.VALUE)
        return bytes(serializer(message, SerializationContext(topic, MessageField.VALUE)))

    def json(self, schema: str, topic: str, value: object) -> bytes:
        serializer = self._serializer(JSONSerializer, schema, topic, MessageField.VALUE)
        return bytes(serializer(value, SerializationContext(topic, MessageField.VALUE)))
