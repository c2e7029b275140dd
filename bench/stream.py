"""The seeded event stream and its topics: generate, create, publish fast, measure, delete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from tests.support.events import StreamSpec, generate_stream

Pairs = Sequence[tuple[bytes, bytes]]
Progress = Callable[[int], None]


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


def split_by_partition(pairs: Pairs, partitions: int) -> list[list[tuple[bytes, bytes]]]:
    """The records of each partition, in stream order, as the default (murmur2) partitioner
    places them by key: each product's events stay in order on one partition."""
    everything = list(range(partitions))
    cache: dict[bytes, int] = {}
    out: list[list[tuple[bytes, bytes]]] = [[] for _ in everything]
    for pair in pairs:
        partition = cache.get(pair[0])
        if partition is None:
            partition = cache[pair[0]] = DefaultPartitioner()(pair[0], everything, everything)
        out[partition].append(pair)
    return out


async def publish_bulk(
    bootstrap: str, topic: str, pairs: Pairs, partitions: int, progress: Progress | None = None
) -> float:
    """Publish every pair (key order kept per partition) as fast as the broker takes them.

    One writer per partition fills record batches and hands them to the producer
    (linger 20 ms, acks=1); returns the seconds it took until every batch was acknowledged.
    """
    split = split_by_partition(pairs, partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        client_id="inventory-bench-publisher",
    )
    await producer.start()
    started = time.perf_counter()
    sent = [0]

    async def submit(batch: BatchBuilder, partition: int) -> asyncio.Future[object]:
        future: asyncio.Future[object] = await producer.send_batch(
            batch, topic, partition=partition
        )
        sent[0] += batch.record_count()
        if progress is not None:
            progress(sent[0])
        return future

    async def writer(partition: int) -> None:
        pending = []
        batch = producer.create_batch()
        for key, value in split[partition]:
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await submit(batch, partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        if batch.record_count():
            pending.append(await submit(batch, partition))
        await asyncio.gather(*pending)

    try:
        await asyncio.gather(*(writer(p) for p in range(partitions)))
    finally:
        await producer.stop()
    return time.perf_counter() - started


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
