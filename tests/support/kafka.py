"""Kafka helpers for tests: publish records, read a topic back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord


async def publish(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key, value=value) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


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
    return {key: value.decode() for key, value in record.headers}
