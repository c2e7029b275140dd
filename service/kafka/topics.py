"""Create the input and dead-letter topics if they are missing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from service.config.settings import KafkaSettings
from service.kafka import clients
from service.kafka.refusal import KafkaAccessDenied

# The DLQ topic accepts records larger than the input topic's limit, so an original record
# near that limit still fits once the error headers are added.
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

log = logging.getLogger("service.topics")


async def ensure_topics(settings: KafkaSettings, needs: Mapping[str, str] | None = None) -> None:
    """Create the topics that are missing. Kafka hides a topic from a user that may not
    Describe it, so creating it is refused: KafkaAccessDenied names what the caller needs on
    it (`needs`: topic -> operation; default the consumer's, Read on the input topic and Write
    on the dead-letter topic, which include Describe)."""
    needs = needs or {settings.kafka_topic: "Read", settings.kafka_dlq_topic: "Write"}
    wanted = [
        NewTopic(
            settings.kafka_topic,
            num_partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
        ),
        NewTopic(
            settings.kafka_dlq_topic,
            num_partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
            topic_configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
        ),
    ]
    admin = clients.admin(settings, client_id="inventory-sink-admin")
    try:
        await admin.start()  # inside: a failed start must close the client too
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if not missing:
            return
        response = await admin.create_topics(missing)
        for name, code, *rest in response.topic_errors:
            if code == 0:
                log.info("created topic %s", name)
                continue
            error = for_code(code)
            if error is TopicAlreadyExistsError:
                continue
            if error is TopicAuthorizationFailedError:
                raise KafkaAccessDenied(needs.get(name, "Describe"), "topic", name)
            raise RuntimeError(
                f"could not create Kafka topic {name!r}: {error.__name__} "
                f"{rest[-1] if rest else ''}; create it by hand or fix "
                "KAFKA_REPLICATION_FACTOR / KAFKA_TOPIC_PARTITIONS"
            )
    finally:
        await admin.close()


async def partitions_of(settings: KafkaSettings, topic: str, needs: str = "Describe") -> list[int]:
    """The topic's partition numbers, or [] if it does not exist. KafkaAccessDenied names
    `needs` (the caller's operation on the topic) when the broker refuses to describe it."""
    found, denied = await described_partitions(settings, [topic])
    if topic in denied:
        raise KafkaAccessDenied(needs, "topic", topic)
    return found[topic]


async def described_partitions(
    settings: KafkaSettings, topics: Sequence[str], **options: Any
) -> tuple[dict[str, list[int]], set[str]]:
    """Each topic's partition numbers ([] when it does not exist or Kafka will not describe
    it), and the topics Kafka will not describe to this user (no ACL). `options`: the admin
    client's own (client_id)."""
    admin = clients.admin(settings, **options)
    try:
        await admin.start()
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found: dict[str, list[int]] = {name: [] for name in topics}
    denied: set[str] = set()
    for item in described:
        if item["error_code"] == 0:
            found[item["topic"]] = sorted(p["partition"] for p in item["partitions"])
        elif for_code(item["error_code"]) is TopicAuthorizationFailedError:
            denied.add(item["topic"])
    return found, denied
