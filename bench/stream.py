"""The seeded event stream and its topics: generate, create, measure, delete (publishing is
`testbed.publish.publish_bulk`: an idempotent producer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from testbed.events import StreamSpec, generate_stream

Pairs = Sequence[tuple[bytes, bytes]]


def build(events: int, products: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs, keyed by product id: the same stream for every mode."""
    return generate_stream(StreamSpec(events=events, products=products, seed=seed))


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="inventory-bench")
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
        for name, code, *_ in response.topic_errors:
            if code and for_code(code) is not TopicAlreadyExistsError:
                raise RuntimeError(f"could not create topic {name}: {for_code(code).__name__}")
    finally:
        await admin.close()
    await _wait_for_leaders(bootstrap, topic, partitions)


async def _wait_for_leaders(bootstrap: str, topic: str, partitions: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        for _ in range(100):
            found = consumer.partitions_for_topic(topic)
            if found and len(found) >= partitions:
                return
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} has no leaders after 10 s")
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="inventory-bench")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [topic for topic in topics if topic in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        found = consumer.partitions_for_topic(topic)
        if not found:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(found)]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}
