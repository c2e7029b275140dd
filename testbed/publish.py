"""Publish records for tests and the benchmark: always with an idempotent producer.

Without idempotence, a batch the broker refused for a moment (a new topic's leader not yet
known) is retried after later batches of the same partition: a key's records then land out of
order, and a last-write-wins sink keeps a stale version. With `enable_idempotence=True`
(acks=all) the broker accepts each partition's batches only in sequence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

Pairs = Sequence[tuple[bytes, bytes]]


def idempotent_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """The producer every publisher here uses (not started): acks=all, idempotent."""
    options: dict[str, Any] = {"linger_ms": 10, "max_request_size": 4 * 1024 * 1024}
    options.update(overrides)
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **options
    )


async def publish_acked(
    bootstrap: str, topic: str, records: Sequence[Sequence[Any]]
) -> list[tuple[int, int]]:
    """Publish (key, value[, headers]) records in order and return each one's (partition,
    offset) as the broker acknowledged it: exact positions to check dead letters against."""
    producer = idempotent_producer(bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=item[0],
                value=item[1],
                headers=list(item[2]) if len(item) > 2 and item[2] else None,
            )
            for item in records
        ]
        return [(sent.partition, sent.offset) for sent in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def publish(bootstrap: str, topic: str, records: Sequence[Sequence[Any]]) -> None:
    """Publish (key, value[, headers]) records in order."""
    await publish_acked(bootstrap, topic, records)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default (murmur2) partitioner places a keyed record on."""
    everything = list(range(partitions))
    return int(DefaultPartitioner()(key, everything, everything))


def split_by_partition(pairs: Pairs, partitions: int) -> list[list[tuple[bytes, bytes]]]:
    """The records of each partition, in stream order, as the default (murmur2) partitioner
    places them by key: each product's events stay in order on one partition."""
    cache: dict[bytes, int] = {}
    out: list[list[tuple[bytes, bytes]]] = [[] for _ in range(partitions)]
    for pair in pairs:
        partition = cache.get(pair[0])
        if partition is None:
            partition = cache[pair[0]] = partition_of(pair[0], partitions)
        out[partition].append(pair)
    return out


async def publish_bulk(
    bootstrap: str,
    topic: str,
    pairs: Pairs,
    partitions: int,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Publish every pair (key order kept per partition) as fast as the broker takes them.

    One writer per partition fills record batches and hands them to the idempotent producer
    (linger 20 ms); returns the seconds it took until every batch was acknowledged.
    """
    split = split_by_partition(pairs, partitions)
    producer = idempotent_producer(
        bootstrap, linger_ms=20, max_batch_size=512 * 1024, client_id="inventory-publisher"
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
