"""The per-type Protobuf JSON writers write what json_format.MessageToDict writes (with the
bridge's two options), for every kind of field, set and unset."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from bridge.wire.protojson import descriptor_set
from bridge.wire.protowriter import Writers
from tests.support.schemas import shop_order

KINDS = """
syntax = "proto3";
package k;
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/any.proto";
message Kinds {
  enum Color { RED = 0; GREEN = 1; }
  optional int32 maybe = 1;
  sint32 s32 = 2;
  sfixed32 sf32 = 3;
  fixed32 fx32 = 4;
  uint32 u32 = 5;
  sfixed64 sf64 = 6;
  double d = 7;
  float f = 8;
  repeated double ds = 9;
  repeated float fs = 10;
  repeated int64 longs = 11;
  repeated bytes blobs = 12;
  repeated Color colors = 13;
  map<bool, string> by_flag = 14;
  map<int64, Kinds> by_number = 15;
  map<string, Color> color_of = 16;
  map<uint32, bytes> blob_of = 17;
  Kinds next = 18;
  google.protobuf.NullValue nothing = 19;
  google.protobuf.Value any_value = 20;
  google.protobuf.ListValue list = 21;
  google.protobuf.FieldMask mask = 22;
  google.protobuf.Empty empty = 23;
  google.protobuf.BytesValue bytes_wrapper = 24;
  google.protobuf.FloatValue float_wrapper = 25;
  google.protobuf.BoolValue bool_wrapper = 26;
  google.protobuf.UInt64Value u64_wrapper = 27;
  repeated google.protobuf.Any anys = 28;
  oneof choice { Color hue = 29; bytes raw = 30; Kinds inner = 33; }
  string from = 31;
  Color color = 32;
}
"""

LEGACY = """
syntax = "proto2";
package p;
message Old {
  optional int32 a = 1 [default = 7];
  required string b = 2;
  repeated int32 c = 3;
  extensions 100 to 200;
}
extend Old { optional int32 more = 100; }
message Holder { optional Old old = 1; optional int64 n = 2 [default = 5]; }
"""


def pool_of(text: str) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    files, _ = descriptor_set(text, {})
    for file in descriptor_pb2.FileDescriptorSet.FromString(files).file:
        pool.Add(file)
    return pool


def the_same(message: Any, pool: descriptor_pool.DescriptorPool) -> None:
    written = Writers(pool).of(message.DESCRIPTOR)(message)
    expected = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True, descriptor_pool=pool)  # fmt: skip
    assert orjson.loads(orjson.dumps(written)) == orjson.loads(orjson.dumps(expected))


@pytest.fixture(scope="module")
def kinds() -> tuple[descriptor_pool.DescriptorPool, Any]:
    pool = pool_of(KINDS)
    return pool, message_factory.GetMessageClass(pool.FindMessageTypeByName("k.Kinds"))


def test_unset_fields_are_written_as_message_to_dict_writes_them(kinds: tuple[Any, Any]) -> None:
    pool, kind = kinds
    the_same(kind(), pool)


def test_every_kind_of_set_field_is_written_as_message_to_dict_writes_it(kinds: tuple[Any, Any]) -> None:
    pool, kind = kinds
    message = kind(maybe=0, s32=-5, sf32=-6, fx32=7, u32=2**32 - 1, sf64=-(2**63), d=math.inf, f=0.1,
                   ds=[math.nan, -math.inf, 1e300], fs=[0.3, math.inf, 123456.789, 3.4e38, 1e-45, -7.25],
                   longs=[2**62, -1], blobs=[b"\x00\xff", b""],
                   colors=[1, 0, 9], by_flag={True: "t", False: "f"}, color_of={"a": 1, "b": 5},
                   blob_of={3: b"\x01"}, hue=1, color=7, **{"from": "me"})  # fmt: skip
    message.by_number[-4].s32 = 1
    message.next.next.longs.append(3)
    message.any_value.struct_value.update({"n": 1, "l": [None, "x"]})
    message.list.extend([1, "two"])
    message.mask.paths.extend(["a.b", "c"])
    message.empty.SetInParent()
    message.bytes_wrapper.value = b"\xfe"
    message.float_wrapper.value = 1.1
    message.bool_wrapper.value = False
    message.u64_wrapper.value = 2**64 - 1
    message.anys.add().Pack(kind(s32=3))
    the_same(message, pool)
    message.raw = b"oneof"
    the_same(message, pool)


def test_proto2_defaults_presence_and_extensions_are_written_as_message_to_dict_writes_them() -> None:
    pool = pool_of(LEGACY)
    holder = message_factory.GetMessageClass(pool.FindMessageTypeByName("p.Holder"))
    the_same(holder(), pool)
    message: Any = holder(n=5)
    message.old.b = "x"
    message.old.c.extend([1, 2])
    message.old.Extensions[pool.FindExtensionByName("p.more")] = 3
    the_same(message, pool)


def test_the_shop_order_with_imports_and_well_known_types_is_written_as_message_to_dict_writes_it() -> None:
    order = shop_order()
    the_same(order, order.DESCRIPTOR.file.pool)


ALIASES = """
syntax = "proto3";
package a;
message M {
  enum E { option allow_alias = true; ZERO = 0; ONE = 1; UNO = 1; }
  E e = 1;
  repeated E es = 2;
}
"""


def test_an_aliased_enum_number_is_written_by_its_first_name_as_message_to_dict_writes_it() -> None:
    pool = pool_of(ALIASES)
    message: Any = message_factory.GetMessageClass(pool.FindMessageTypeByName("a.M"))(e=1, es=[1, 0])
    the_same(message, pool)
    assert Writers(pool).of(message.DESCRIPTOR)(message) == {"e": "ONE", "es": ["ONE", "ZERO"]}


def pool_of_file(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool


def test_a_schema_file_named_as_the_wrappers_file_has_messages_of_its_own() -> None:
    """Wrappers are known by their full names: a schema's file may be called google/protobuf/wrappers.proto."""
    file = descriptor_pb2.FileDescriptorProto(name="google/protobuf/wrappers.proto", package="w", syntax="proto3")
    file.message_type.add(name="Thing").field.add(name="n", number=1, type=5, label=1)  # int32
    file.message_type.add(name="Holder").field.add(name="thing", number=1, type=11, type_name=".w.Thing", label=1)
    pool = pool_of_file(file)
    holder = pool.FindMessageTypeByName("w.Holder")
    message: Any = message_factory.GetMessageClass(holder)()
    message.thing.n = 5
    assert Writers(pool).of(holder)(message) == {"thing": {"n": 5}}


def test_a_writer_that_cannot_be_made_fails_alike_when_asked_again_and_spoils_no_other() -> None:
    # google.protobuf.Int32Value without its value field: a wrapper by name whose writer cannot be made
    file = descriptor_pb2.FileDescriptorProto(name="impostor.proto", package="google.protobuf", syntax="proto3")
    file.message_type.add(name="Int32Value").field.add(name="n", number=1, type=5, label=1)
    file.message_type.add(name="Holder").field.add(
        name="wrapped", number=1, type=11, type_name=".google.protobuf.Int32Value", label=1
    )
    file.message_type.add(name="Plain").field.add(name="n", number=1, type=5, label=1)
    pool = pool_of_file(file)
    writers = Writers(pool)
    holder, plain = (pool.FindMessageTypeByName(f"google.protobuf.{name}") for name in ("Holder", "Plain"))
    for _ in range(2):  # not a KeyError of a writer's name, registered by the build that failed
        with pytest.raises(KeyError, match="'value'"):
            writers.of(holder)
    assert writers.of(plain)(message_factory.GetMessageClass(plain)(n=3)) == {"n": 3}
