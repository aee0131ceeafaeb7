"""Schema topics against a real registry (Apicurio) and real serializers (confluent-kafka's):
what a browser receives is the original object through the mapping of docs/schemas.md."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference
from confluent_kafka.serialization import MessageField

from bridge.kafka.localregistry import LocalRegistry
from tests.support.bridgeproc import BridgeProcess, open_stream
from tests.support.cluster import Cluster
from tests.support.schemas import Serializers, generated_protos, shop_order
from tests.support.scrape import eventually, scrape

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]

AVRO_SCHEMA = orjson.dumps({
    "type": "record", "name": "Everything", "namespace": "bridgetest",
    "fields": [
        {"name": "nothing", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "s", "type": "string"},
        {"name": "nested", "type": {"type": "record", "name": "Outer", "fields": [
            {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}},
        ]}},
        {"name": "chain", "type": {"type": "record", "name": "Node", "fields": [
            {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]},
        ]}},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "list", "type": {"type": "array", "items": "int"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "absent", "type": ["null", "string"], "default": None},
        {"name": "either", "type": ["string", "int"]},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 30, "scale": 4}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tmillis", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "tmicros", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "tsmillis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tsmicros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "localmicros", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    ],
}).decode()  # fmt: skip
ORDER_ID = uuid.UUID("0b5a8f8e-4f53-4d0a-9a57-8a1e6b7f2c11")
AVRO_VALUE = {
    "nothing": None, "flag": True, "i": -5, "big": 2**62 + 1, "f": 1.5, "d": 0.1, "raw": b"\x00\xff", "s": "héllo",
    "nested": {"inner": {"x": 1}}, "chain": {"value": 1, "next": {"value": 2, "next": None}}, "color": "GREEN",
    "list": [1, 2], "counts": {"a": -(2**63)}, "fx": b"\x01\x02\x03\x04", "maybe": "here", "absent": None,
    "either": 7, "price": Decimal("123456789012345678901234.5678"), "id": ORDER_ID, "day": date(2026, 12, 2),
    "tmillis": time(12, 34, 56, 789000), "tmicros": time(12, 34, 56, 123456),
    "tsmillis": datetime(2026, 12, 2, 6, 30, 0, 123000, tzinfo=UTC),
    "tsmicros": datetime(2026, 12, 2, 6, 30, 0, 123456, tzinfo=UTC),
    "local": datetime(2026, 12, 2, 6, 30, 0, 123000), "localmicros": datetime(2026, 12, 2, 6, 30, 0, 5),
}  # fmt: skip
# AVRO_VALUE through the mapping table of docs/schemas.md, written out by hand
AVRO_JSON = {
    "nothing": None, "flag": True, "i": -5, "big": 2**62 + 1, "f": 1.5, "d": 0.1, "raw": "AP8=", "s": "héllo",
    "nested": {"inner": {"x": 1}}, "chain": {"value": 1, "next": {"value": 2, "next": None}}, "color": "GREEN",
    "list": [1, 2], "counts": {"a": -(2**63)}, "fx": "AQIDBA==", "maybe": "here", "absent": None, "either": 7,
    "price": "123456789012345678901234.5678", "id": str(ORDER_ID), "day": "2026-12-02",
    "tmillis": "12:34:56.789000", "tmicros": "12:34:56.123456",
    "tsmillis": "2026-12-02T06:30:00.123000Z", "tsmicros": "2026-12-02T06:30:00.123456Z",
    "local": "2026-12-02T06:30:00.123000", "localmicros": "2026-12-02T06:30:00.000005",
}  # fmt: skip


@pytest.fixture
def serializers(schema_registry: LocalRegistry) -> Iterator[Serializers]:
    serializers = Serializers(schema_registry.url)
    yield serializers
    serializers.close()


async def schema_bridge(start_bridge: StartBridge, registry: LocalRegistry, topic: str, **flags: str) -> BridgeProcess:
    bridge: BridgeProcess = await start_bridge(schema_registry_url=registry.url, schema_topics=topic, **flags)
    await bridge.wait_for_topic(topic, 3)
    return bridge


async def test_avro_values_arrive_as_the_documented_json(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    bridge = await schema_bridge(start_bridge, schema_registry, topic)
    second = {**AVRO_VALUE, "maybe": None, "either": "seven", "color": "RED", "chain": {"value": 3, "next": None}}
    values = [serializers.avro(AVRO_SCHEMA, topic, value) for value in (AVRO_VALUE, second)]
    async with open_stream(bridge.url, topic) as stream:
        await cluster.produce(topic, values, partition_of=[0, 0])
        events = await stream.events(2)
    assert [event.type for event in events] == ["message", "message"]
    assert orjson.loads(events[0].data) == AVRO_JSON
    assert str(2**62 + 1) in events[0].data  # every digit on the wire, not a float's
    assert orjson.loads(events[1].data) == {**AVRO_JSON, "maybe": None, "either": "seven", "color": "RED",
                                            "chain": {"value": 3, "next": None}}  # fmt: skip


SHOP_JSON = {
    "id": "o-1", "i32": -7, "i64": str(-(2**62)), "u64": str(2**64 - 1), "s64": "-3", "f64": str(2**63),
    "flag": True, "ratio": 0.5, "amount": 19.99, "blob": "AP4=", "status": "STATUS_PAID",
    "lines": [{"sku": "X", "quantity": 2}], "counts": {"k": 4}, "cash": {"currency": "EUR", "units": "12"},
    "at": "2026-12-02T06:30:00.250Z", "took": "1.500s", "extra": {"n": 1.0, "list": ["x", None, True]},
    "note": "hi", "big": str(2**60),
    "detail": {"@type": "type.googleapis.com/bridgetest.money.Money", "currency": "USD", "units": "1"},
    "tags": ["a", "b"],
}  # fmt: skip


async def test_protobuf_values_with_imports_and_well_known_types_arrive_as_the_documented_json(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    bridge = await schema_bridge(start_bridge, schema_registry, topic)
    shop = generated_protos()
    values = [serializers.protobuf(shop_order(), topic), serializers.protobuf(shop.Ping(**{"from": "me"}), topic),
              serializers.protobuf(shop.Order(), topic)]  # fmt: skip
    async with open_stream(bridge.url, topic, query={"format": "envelope"}) as stream:
        await cluster.produce(topic, values, partition_of=[0, 0, 0])
        events = await stream.events(3)
    envelopes = [orjson.loads(event.data) for event in events]
    assert envelopes[0]["value"] == SHOP_JSON
    assert envelopes[0]["value_schema"]["type"] == "PROTOBUF"
    assert envelopes[1]["value"] == {"from": "me"}  # message index [1]: the file's second message
    # proto3 defaults are written: every Order has the same fields
    assert set(envelopes[2]["value"]) == set(SHOP_JSON) - {"cash", "at", "took", "extra", "note", "big", "detail"}
    assert envelopes[2]["value"]["i64"] == "0"


async def test_json_schema_values_keep_every_digit_and_avro_keys_are_decoded(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    bridge = await schema_bridge(start_bridge, schema_registry, topic)
    schema = orjson.dumps({"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}})
    value = serializers.json(schema.decode(), topic, {"n": 2**63 + 5, "s": "ok"})
    key = serializers.avro('"string"', topic, "order-7", MessageField.KEY)
    async with open_stream(bridge.url, topic, query={"format": "envelope", "key": "order-7"}) as stream:
        await cluster.produce(topic, [value, value], partition_of=[0, 0], keys=[b"other", key])
        (event,) = await stream.events(1)
    assert str(2**63 + 5) in event.data
    envelope = orjson.loads(event.data)
    assert envelope["value"] == {"n": 2**63 + 5, "s": "ok"}
    assert envelope["key"] == "order-7"
    assert envelope["key_schema"]["type"] == "AVRO"
    assert envelope["value_schema"]["type"] == "JSON"


async def test_a_schema_id_in_a_header_frames_the_bare_value_and_key(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    """The header form: the prefixes confluent-kafka's serializers wrote, moved into the
    ``__value_schema_id`` / ``__key_schema_id`` headers, where confluent-kafka's deserializer
    reads them too. (Its header serializer writes a schema GUID there instead, which it cannot
    do with Apicurio 3.3.3: the registry gives no GUID, "Schema GUID is not set".) A GUID
    header is undecodable: Apicurio has no /schemas/guids to look it up."""
    bridge = await schema_bridge(start_bridge, schema_registry, topic)
    value = serializers.avro(AVRO_SCHEMA, topic, AVRO_VALUE)
    key = serializers.avro('"string"', topic, "order-7", MessageField.KEY)
    framing = [("__value_schema_id", value[:5]), ("__key_schema_id", key[:5])]
    async with open_stream(bridge.url, topic, query={"format": "envelope"}) as stream:
        await cluster.produce(topic, [value[5:]], partition_of=[0], keys=[key[5:]], headers=framing)
        guid = b"\x01" + uuid.uuid4().bytes
        await cluster.produce(topic, [value[5:]], partition_of=[0], headers=[("__value_schema_id", guid)])
        decoded, unknown = [orjson.loads(event.data) for event in await stream.events(2)]
    assert decoded["value"] == AVRO_JSON
    assert decoded["value_schema"] == {"id": int.from_bytes(value[1:5], "big"), "type": "AVRO"}
    assert (decoded["key"], decoded["key_schema"]["type"]) == ("order-7", "AVRO")
    assert unknown["undecodable"]["reason"] == "unknown_schema"
    assert str(uuid.UUID(bytes=guid[1:])) in unknown["undecodable"]["message"]


async def test_a_schema_topic_is_decoded_only_while_a_stream_watches_it(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    """Records are decoded (and their schemas fetched) when they are read, and a topic is read only
    while a stream watches it, and a linger after: an unwatched schema topic costs no decoding."""
    bridge = await schema_bridge(start_bridge, schema_registry, topic, linger_seconds="1")
    value = serializers.avro(AVRO_SCHEMA, topic, AVRO_VALUE)
    await cluster.produce(topic, [value], partition_of=[0])
    await asyncio.sleep(1.5)
    unread = await scrape(bridge)
    assert (unread.value("schema_fetches_total"), unread.value("records_consumed_total", topic=topic)) == (0, None)
    async with open_stream(bridge.url, topic) as stream:
        await cluster.produce(topic, [value], partition_of=[0])
        assert orjson.loads((await stream.next_event()).data) == AVRO_JSON
    await eventually(bridge, lambda m: m.value("topic_releases_total") == 1)
    later = serializers.avro('{"type": "record", "name": "Unread", "fields": [{"name": "x", "type": "int"}]}',
                             topic, {"x": 1})  # fmt: skip
    await cluster.produce(topic, [later], partition_of=[0])
    await asyncio.sleep(1.5)  # several fetch waits: a reader of the topic would have asked for its schema
    released = await scrape(bridge)
    assert (released.value("schema_fetches_total"), released.value("records_consumed_total", topic=topic)) == (1, 1)


async def test_records_that_cannot_be_decoded_are_delivered_as_undecodable_events(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    bridge = await schema_bridge(start_bridge, schema_registry, topic)
    good = serializers.avro(AVRO_SCHEMA, topic, AVRO_VALUE)
    schema_id = int.from_bytes(good[1:5], "big")
    corrupt = good[:5] + b"\x01"  # a boolean where a record of 26 fields should be
    unknown = b"\x00\x7f\xff\xff\xf0payload"
    no_prefix = b'{"plain": "json"}'
    async with open_stream(bridge.url, topic) as stream:
        await cluster.produce(topic, [corrupt, unknown, no_prefix, good], partition_of=[1, 1, 1, 1])
        events = await stream.events(4)
    assert [event.type for event in events] == ["undecodable", "undecodable", "undecodable", "message"]
    problems = [orjson.loads(event.data) for event in events[:3]]
    assert [(p["reason"], p["schema_id"]) for p in problems] == [
        ("bad_payload", schema_id), ("unknown_schema", 0x7FFFFFF0), ("no_schema_prefix", None),
    ]  # fmt: skip
    assert [base64.b64decode(p["value"]) for p in problems] == [corrupt, unknown, no_prefix]
    assert orjson.loads(events[3].data) == AVRO_JSON
    await eventually(bridge, lambda m: m.value("undecodable_records_total", topic=topic, reason="bad_payload") == 1)


async def test_filters_ring_replay_and_kafka_catch_up_see_the_decoded_values(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    bridge = await schema_bridge(start_bridge, schema_registry, topic, ring_records="4")
    values = [serializers.avro(AVRO_SCHEMA, topic, {**AVRO_VALUE, "i": n, "color": ("RED", "GREEN")[n % 2]})
              for n in range(8)]  # fmt: skip
    async with open_stream(bridge.url, topic, query={"where": "color==GREEN"}) as stream:
        await cluster.produce(topic, values, partition_of=[0] * 8)
        live = await stream.events(4)
    assert [orjson.loads(event.data)["i"] for event in live] == [1, 3, 5, 7]

    async def resumed(after: str | None, count: int, **query: str) -> list[str]:
        async with open_stream(bridge.url, topic, last_event_id=after, query=query) as stream:
            return [event.data for event in await stream.events(count)]

    def numbers(events: list[str]) -> list[int]:
        return [orjson.loads(data)["i"] for data in events]

    # the ring holds the last 4 records: from the 5th on it replays, before that Kafka has them
    from_ring, from_kafka = await resumed(live[2].id, 2), await resumed(live[0].id, 6)
    assert numbers(from_ring) == [6, 7]
    assert numbers(from_kafka) == [2, 3, 4, 5, 6, 7]
    assert from_kafka[1] == live[1].data  # the same bytes as live
    assert from_ring[1] == live[3].data
    # the filter on the decoded value, replayed from the ring, caught up from Kafka, and since a time
    assert numbers(await resumed(live[2].id, 1, where="color==GREEN")) == [7]
    assert numbers(await resumed(live[0].id, 3, where="color==GREEN")) == [3, 5, 7]
    assert numbers(await resumed(None, 4, where="color==GREEN", since="0")) == [1, 3, 5, 7]
    metrics = await eventually(bridge, lambda m: (m.value("resumes_total", topic=topic, kind="kafka") or 0) >= 2)
    assert metrics.value("resumes_total", topic=topic, kind="ring") == 2
    assert metrics.value("resumes_total", topic=topic, kind="since") == 1


async def test_a_registry_that_stops_stalls_no_other_topic_and_its_schema_topic_goes_on(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    registry, own = schema_registry, serializers  # stopped and started again: it keeps its schemas (a file)
    try:
        plain_topic = await cluster.create_topic(f"{topic}-json", partitions=1)
        bridge = await schema_bridge(start_bridge, registry, topic)
        await bridge.wait_for_topic(plain_topic, 1)
        before = own.avro(AVRO_SCHEMA, topic, AVRO_VALUE)
        later = own.avro(
            '{"type": "record", "name": "Later", "fields": [{"name": "x", "type": "int"}]}', topic, {"x": 1}
        )  # registered now, first asked for by the bridge while the registry is down
        async with (open_stream(bridge.url, topic) as schema_stream,
                    open_stream(bridge.url, plain_topic) as plain_stream):  # fmt: skip
            await cluster.produce(topic, [before], partition_of=[0])
            assert orjson.loads((await schema_stream.next_event()).data) == AVRO_JSON
            registry.stop()
            await cluster.produce(topic, [later, before], partition_of=[0, 0])
            await cluster.produce(plain_topic, [b'{"n": 1}'], partitions=1)
            # the JSON topic is not held up by the schema topic's wait for the registry
            assert (await plain_stream.next_event(timeout=3)).data == '{"n": 1}'
            async with httpx.AsyncClient(base_url=bridge.url) as client:
                assert (await client.get("/readyz")).json()["schema_registry"]["reachable"] is False
            waited = await schema_stream.events(2, timeout=30)
            assert [event.type for event in waited] == ["undecodable", "message"]  # then its order kept
            assert orjson.loads(waited[0].data)["reason"] == "registry_unavailable"
            assert orjson.loads(waited[1].data) == AVRO_JSON  # a schema in the cache needs no registry
            registry.start()
            await cluster.produce(topic, [later], partition_of=[0])
            assert orjson.loads((await schema_stream.next_event(timeout=30)).data) == {"x": 1}
        metrics = await eventually(bridge, lambda m: m.value("schema_registry_reachable") == 1)
        assert metrics.value("schema_fetch_errors_total", reason="registry_unavailable") == 1
        assert metrics.value("schemas_cached") == 2
    finally:
        if registry.process is None:
            registry.start()  # for the tests after this one


async def test_an_avro_schema_that_references_another_subject_is_resolved(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    money = (
        '{"type": "record", "name": "Money", "namespace": "bridgetest", "fields": [{"name": "cents", "type": "long"}]}'
    )
    subject = f"{topic}-money"
    serializers.client.register_schema(subject, Schema(money, "AVRO"))
    order = Schema(
        '{"type": "record", "name": "Priced", "namespace": "bridgetest",'
        ' "fields": [{"name": "price", "type": "bridgetest.Money"}, {"name": "was", "type": ["null", "Money"]}]}',
        "AVRO",
        references=[SchemaReference("bridgetest.Money", subject, 1)],
    )
    value = serializers.avro(order, topic, {"price": {"cents": 250}, "was": {"cents": 300}})
    bridge = await schema_bridge(start_bridge, schema_registry, topic)
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as stream:
        await cluster.produce(topic, [value], partition_of=[2])
        event = await stream.next_event()
    assert (event.type, orjson.loads(event.data)) == ("message", {"price": {"cents": 250}, "was": {"cents": 300}})


async def test_a_protobuf_schema_nesting_250_message_types_is_decoded_and_the_reader_goes_on(
    start_bridge: StartBridge, schema_registry: LocalRegistry, serializers: Serializers, cluster: Cluster, topic: str
) -> None:
    # Making its writers once recursed past Python's stack: the error stopped the reader, and every topic
    chain = " ".join(f"message M{number} {{ M{number + 1} n = 1; }}" for number in range(249))
    text = f'syntax = "proto3"; package chain; {chain} message M249 {{ int32 n = 1; }}'
    schema_id = serializers.client.register_schema(f"{topic}-chain", Schema(text, "PROTOBUF"))
    deep = b"\x00" + schema_id.to_bytes(4, "big") + b"\x00" + b"\x0a\x02\x0a\x00"  # [0]: M0, its n an M1 holding an M2
    after = serializers.avro(AVRO_SCHEMA, topic, AVRO_VALUE)
    bridge = await schema_bridge(start_bridge, schema_registry, topic)
    async with open_stream(bridge.url, topic) as stream:
        await cluster.produce(topic, [deep, after], partition_of=[0, 0])
        events = await stream.events(2)
    assert [(event.type, orjson.loads(event.data)) for event in events] == [
        ("message", {"n": {"n": {}}}), ("message", AVRO_JSON),
    ]  # fmt: skip
