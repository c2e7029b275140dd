"""Kafka helpers for tests: publish records, read a topic back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord


async def publish(bootstrap: str, topic: str, records: Sequence[Sequence[Any]]) -> None:
    """Publish (key, value[, headers]) records in order."""
    await publish_acked(bootstrap, topic, records)


async def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0, settle: float = 1.0
) -> list[ConsumerRecord]:
    """Read `topic` from the beginning until `expected` records arrived (then `settle` more
    seconds, so extra records would be seen too) or `timeout` passed."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                found.extend(records)
            if settle_until is None and len(found) >= expected:
                settle_until = time.monotonic() + settle
    finally:
        await consumer.stop()
    return sorted(found, key=lambda r: (r.partition, r.offset))


def header_map(record: ConsumerRecord) -> dict[str, str]:
    """Each header's last occurrence (Kafka's lastHeader): for a dead letter, the sink's."""
    last = dict(record.headers)
    return {key: (value or b"").decode("utf-8", "replace") for key, value in last.items()}


async def publish_acked(
    bootstrap: str,
    topic: str,
    records: Sequence[Sequence[Any]],
) -> list[tuple[int, int]]:
    """Publish (key, value[, headers]) records in order and return each one's (partition,
    offset) as the broker acknowledged it: exact positions to check dead letters against."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
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
