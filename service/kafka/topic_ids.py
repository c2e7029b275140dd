"""Kafka topic ids (KIP-516): a topic deleted and created again, or the same name on a new
cluster, gets a new id, while its offsets start again at 0.

aiokafka (0.14) speaks Metadata only up to v5, which has no topic ids. This module adds the
Metadata request v10 and v12 (Kafka 2.8+; v12 is what Kafka 4 prefers) with aiokafka's own
protocol types and sends it on an existing client, so it inherits that client's connection
and security settings. On a broker without those versions the ids are simply unknown (None).
"""

from __future__ import annotations

import logging
import uuid
from io import BytesIO
from typing import Any, TypeAlias

from aiokafka.errors import IncompatibleBrokerVersion
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

log = logging.getLogger("service.topic_ids")

METADATA_API_KEY = 3
# Kafka's "no id" value (Uuid.ZERO_UUID), sent for topics named rather than identified.
ZERO_UUID = uuid.UUID(int=0)


class _Uuid(AbstractType[uuid.UUID]):  # type: ignore[misc]
    """Kafka's `uuid` protocol type: 16 bytes, most significant first."""

    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding a uuid")
        return uuid.UUID(bytes=raw)


def _broker() -> tuple[tuple[str, Any], ...]:
    return (
        ("node_id", Int32),
        ("host", CompactString("utf-8")),
        ("port", Int32),
        ("rack", CompactString("utf-8")),
        ("tags", TaggedFields),
    )


_PARTITION = CompactArray(
    ("error_code", Int16),
    ("partition_index", Int32),
    ("leader_id", Int32),
    ("leader_epoch", Int32),
    ("replica_nodes", CompactArray(Int32)),
    ("isr_nodes", CompactArray(Int32)),
    ("offline_replicas", CompactArray(Int32)),
    ("tags", TaggedFields),
)

_TOPIC = CompactArray(
    ("error_code", Int16),
    ("name", CompactString("utf-8")),
    ("topic_id", _Uuid),
    ("is_internal", Boolean),
    ("partitions", _PARTITION),
    ("topic_authorized_operations", Int32),
    ("tags", TaggedFields),
)

_REQUESTED_TOPICS = CompactArray(
    ("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
)


class MetadataResponse_v10(Response):  # type: ignore[misc]
    API_KEY = METADATA_API_KEY
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(*_broker())),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", _TOPIC),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class MetadataResponse_v12(Response):  # type: ignore[misc]
    API_KEY = METADATA_API_KEY
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(*_broker())),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", _TOPIC),
        ("tags", TaggedFields),
    )


class MetadataRequest_v10(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = METADATA_API_KEY
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        ("topics", _REQUESTED_TOPICS),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = METADATA_API_KEY
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        ("topics", _REQUESTED_TOPICS),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


_Struct: TypeAlias = MetadataRequest_v10 | MetadataRequest_v12


class TopicIdRequest(Request[_Struct]):  # type: ignore[misc]
    """Metadata for the named topics, never creating one; the newest version both sides know."""

    API_KEY = METADATA_API_KEY

    def __init__(self, topics: list[str]) -> None:
        self._topics: list[tuple[uuid.UUID, str, dict[int, bytes]]] = [
            (ZERO_UUID, name, {}) for name in topics
        ]

    def build(self, request_struct_class: type[_Struct]) -> _Struct:
        if request_struct_class.API_VERSION >= 12:
            return request_struct_class(self._topics, False, False, {})
        return request_struct_class(self._topics, False, False, False, {})


async def topic_ids(client: Any, topics: list[str]) -> dict[str, uuid.UUID | None]:
    """The id of each topic, using aiokafka client `client` (AIOKafkaClient, for example a
    consumer's); None for a topic that does not exist or when the broker cannot say."""
    unknown: dict[str, uuid.UUID | None] = dict.fromkeys(topics)
    if not topics:
        return unknown
    node = client.get_random_node()
    if node is None:
        await client.force_metadata_update()
        node = client.get_random_node()
    try:
        response = await client.send(node, TopicIdRequest(topics))
    except (IncompatibleBrokerVersion, NotImplementedError) as error:
        log.debug("the broker cannot report topic ids (%s)", error)
        return unknown
    found = dict(unknown)
    for error_code, name, topic_id, *_ in response.topics:
        if error_code == 0 and name in found and topic_id != ZERO_UUID:
            found[name] = topic_id
    return found
