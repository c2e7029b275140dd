"""The partition guard's in-flight checks (service/positions/guard.py) with a real consumer,
broker and database: what the write path learns from the guard's snapshot when a fetch shows
that the log changed, and what the guard does once the transaction has committed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from service.config.settings import Settings
from service.core.position_verdict import OnRecordsLost
from service.kafka.topics import ensure_topics
from service.positions.guard import PartitionGuard
from service.positions.log_snapshot import Gap
from service.write_path.retry import Backoff
from service.write_path.rewinds import Rewind
from service.write_path.transaction import WritePath
from testbed.events import record, upsert
from testbed.publish import publish
from testbed.write_path import MemoryDeadLetterSink
from tests.support.write_path import SimpleRecord, process


@pytest.fixture
async def log_from_20_to_30(settings: Settings, kafka: str) -> AsyncIterator[AIOKafkaConsumer]:
    """Partition 0 of a fresh topic holding offsets 20..29 (0..19 deleted, as retention
    would), and a consumer assigned to it that has fetched it (so it knows the highwater)."""
    await ensure_topics(settings.model_copy(update={"kafka_topic_partitions": 1}))
    pairs = [record(upsert(i, 1)) for i in range(1, 31)]
    await publish(kafka, settings.kafka_topic, pairs)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    tp = TopicPartition(settings.kafka_topic, 0)
    try:
        await admin.delete_records({tp: RecordsToDelete(20)})
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    await consumer.getmany(tp, timeout_ms=5000)
    assert consumer.highwater(tp) == 30
    yield consumer
    await consumer.stop()


def _guard(engine: AsyncEngine, consumer: AIOKafkaConsumer, **kw: object) -> PartitionGuard:
    guard = PartitionGuard(async_sessionmaker(engine), "g", CollectorRegistry(), **kw)  # type: ignore[arg-type]
    guard.attach(lambda: consumer)
    return guard


def _lost(guard: PartitionGuard, topic: str) -> float:
    return guard.metrics.lost.labels(topic, "0")._value.get()  # type: ignore[no-any-return]


async def _stored_at(engine: AsyncEngine, topic: str, offset: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) "
                "VALUES ('g', :topic, 0, :offset)"
            ),
            {"topic": topic, "offset": offset},
        )


def _refetch(topic: str) -> list[SimpleRecord]:
    """Offsets 20..22, the first records of the log after a seek back to 12."""
    pairs = [record(upsert(100 + i, 1)) for i in range(3)]
    return [SimpleRecord(topic, 0, 20 + i, k, v) for i, (k, v) in enumerate(pairs)]


async def test_a_gap_below_the_log_start_is_counted_and_logged_as_loss(
    engine: AsyncEngine,
    settings: Settings,
    log_from_20_to_30: AIOKafkaConsumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a seek back to 12 the log starts at 20: offsets 12..19 were deleted by
    retention. With ON_RECORDS_LOST_TO_RETENTION=continue the batch is written past them."""
    topic = settings.kafka_topic
    guard = _guard(engine, log_from_20_to_30)
    await _stored_at(engine, topic, 12)
    write_path = WritePath(
        async_sessionmaker(engine), MemoryDeadLetterSink(), "g", Backoff(0.01, 0.1), guard=guard
    )
    write_path.rewinds.remember({(topic, 0): Rewind(12, 20)})
    with caplog.at_level(logging.INFO, "service.positions"):
        report = await process(write_path, _refetch(topic))
        gap = Gap(12, 20, 20, 30, accepted=True)
        guard.crossed_gap((topic, 0), gap)  # the same gap again (a retried batch): said once
    assert (report.applied, report.abandoned, report.next_offsets) == (3, 0, {(topic, 0): 23})
    assert _lost(guard, topic) == 8
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "offsets 12..19 (8 records) were deleted by retention" in error.getMessage()
    assert not guard.stopped.stopped()


async def test_a_gap_inside_the_log_is_not_loss(
    engine: AsyncEngine,
    settings: Settings,
    log_from_20_to_30: AIOKafkaConsumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tp = (settings.kafka_topic, 0)
    guard = _guard(engine, log_from_20_to_30)
    snapshot = await guard.snapshot({tp: 25}, {tp: 22})  # the log start from the broker
    assert snapshot.gaps == {tp: Gap(22, 25, 20, 30, accepted=True)}
    with caplog.at_level(logging.INFO, "service.positions"):
        guard.crossed_gap(tp, snapshot.gaps[tp])
    assert _lost(guard, settings.kafka_topic) == 0
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "compaction or transaction markers" in caplog.records[0].getMessage()


async def test_with_the_stop_policy_a_gap_below_the_log_start_stops_the_partition(
    engine: AsyncEngine, settings: Settings, log_from_20_to_30: AIOKafkaConsumer
) -> None:
    topic = settings.kafka_topic
    guard = _guard(engine, log_from_20_to_30, on_lost=OnRecordsLost.STOP)
    await _stored_at(engine, topic, 12)
    write_path = WritePath(
        async_sessionmaker(engine), MemoryDeadLetterSink(), "g", Backoff(0.01, 0.1), guard=guard
    )
    write_path.rewinds.remember({(topic, 0): Rewind(12, 20)})
    report = await process(write_path, _refetch(topic))
    assert (report.applied, report.abandoned, report.next_offsets) == (0, 3, {})
    assert set(guard.stopped.stopped()) == {(topic, 0)}
    assert "offsets 12..19" in guard.stopped.stopped()[(topic, 0)]
    assert guard.metrics.stopped.labels(topic, "0")._value.get() == 1
    assert TopicPartition(topic, 0) in log_from_20_to_30.paused()
    assert _lost(guard, topic) == 8
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM products")) == 0
        assert await connection.scalar(text("SELECT next_offset FROM consumer_offsets")) == 12


async def test_records_below_the_stored_position_of_a_shorter_log_are_held_not_dropped(
    engine: AsyncEngine, settings: Settings, log_from_20_to_30: AIOKafkaConsumer
) -> None:
    """The write path asks the guard before dropping records as redelivered: with the log
    ending (30) below the stored position (40), they are new records of a reset log."""
    topic = settings.kafka_topic
    guard = _guard(engine, log_from_20_to_30)
    write_path = WritePath(
        async_sessionmaker(engine), MemoryDeadLetterSink(), "g", Backoff(0.01, 0.1), guard=guard
    )
    await _stored_at(engine, topic, 40)
    batch = _refetch(topic)
    report = await process(write_path, batch)
    assert (report.applied, report.redelivered, report.abandoned) == (0, 0, 3)
    assert guard.holds((topic, 0))
    assert TopicPartition(topic, 0) in log_from_20_to_30.paused()

    # An ordinary redelivery (stored position inside the log) is still dropped.
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE consumer_offsets SET next_offset = 23"))
    other = _guard(engine, log_from_20_to_30)
    write_path.guard = other
    report = await process(write_path, batch)
    assert (report.redelivered, report.abandoned) == (3, 0)
    assert not other.holds((topic, 0))
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM products")) == 0
