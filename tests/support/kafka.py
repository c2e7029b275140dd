"""Kafka helpers for tests: read a topic back (publishing is testbed.publish)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord


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


async def read_to_end(bootstrap: str, topic: str, timeout: float = 300.0) -> list[ConsumerRecord]:
    """Every record of `topic` up to its end offsets once its partitions are known,
    duplicates included. A count cannot tell when to stop once records may be published twice
    (dead letters are at-least-once): reading until N arrived stops short of the last
    distinct ones."""
    # No group: the consumer is given every partition of the topic it subscribes to.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while not consumer.assignment():
            assert time.monotonic() < deadline, f"{topic}: no partitions within {timeout}s"
            await asyncio.sleep(0.1)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            assert time.monotonic() < deadline, (
                f"{topic}: not read to its end offsets {ends} within {timeout}s "
                f"({len(found)} records read)"
            )
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                found.extend(records)
    finally:
        await consumer.stop()
    return sorted(found, key=lambda r: (r.partition, r.offset))


def header_map(record: ConsumerRecord) -> dict[str, str]:
    """Each header's last occurrence (Kafka's lastHeader): for a dead letter, the sink's."""
    last = dict(record.headers)
    return {key: (value or b"").decode("utf-8", "replace") for key, value in last.items()}
