"""The cluster's topics with their Kafka topic ids: a Metadata request of version 12.

Kafka gives every topic a random id when it is created, so a topic deleted and
created again under the same name has another id (offsets alone cannot tell:
the new topic may already have more records than the old one had). aiokafka
asks for metadata in versions up to 5, which carry no topic id, so this module
declares version 12 (Kafka 3.1 and later) with aiokafka's protocol types.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

NO_TOPIC_ID = bytes(16)  # what a broker that has no id for a topic answers


class Uuid(AbstractType[bytes]):
    """Kafka's UUID: 16 bytes."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding UUID")
        return value


class MetadataResponse_v12(Response):
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(("node_id", Int32), ("host", CompactString("utf-8")), ("port", Int32),
                                 ("rack", CompactString("utf-8")), ("tags", TaggedFields))),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(
            ("error_code", Int16), ("name", CompactString("utf-8")), ("topic_id", Uuid), ("is_internal", Boolean),
            ("partitions", CompactArray(
                ("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32), ("leader_epoch", Int32),
                ("replica_nodes", CompactArray(Int32)), ("isr_nodes", CompactArray(Int32)),
                ("offline_replicas", CompactArray(Int32)), ("tags", TaggedFields),
            )),
            ("topic_authorized_operations", Int32), ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )  # fmt: skip


class MetadataRequest_v12(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        ("topics", CompactArray(("topic_id", Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class AllTopicsRequest(Request[MetadataRequest_v12]):
    """Every topic of the cluster (a null list of topics), never creating one."""

    API_KEY = 3

    def build(self, request_struct_class: type[MetadataRequest_v12]) -> MetadataRequest_v12:
        return request_struct_class(None, False, False, {})


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic_id: bytes  # 16 bytes; NO_TOPIC_ID where the broker has none
    partitions: int
    error_code: int  # 0, or why the topic cannot be read now (its partitions have no leader yet, say)
    leaders: tuple[int, ...] = ()  # the broker leading each partition, by partition number; -1: none


async def describe_topics(client: AIOKafkaClient) -> dict[str, TopicInfo]:
    """Every topic of the cluster, by name."""
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known")
    response: Response = await client.send(node, AllTopicsRequest())
    return {
        topic["name"]: TopicInfo(
            topic["topic_id"],
            len(topic["partitions"]),
            topic["error_code"],
            tuple(
                partition["leader_id"]
                for partition in sorted(topic["partitions"], key=lambda partition: partition["partition_index"])
            ),
        )
        for topic in response.to_object()["topics"]
        if topic["name"] is not None
    }
