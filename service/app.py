"""The FastStream application: a Kafka batch subscriber feeding the write path.

Run it with `python -m service run`, or with FastStream's CLI:
`faststream run service.app:create_app --factory`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import make_asgi_app

from service import lenient_fetch, store
from service.config import Settings, get_settings
from service.db import make_engine, make_session_factory
from service.dead_letter import KafkaDeadLetterSink
from service.health import Probe, every, probe_route, scrape_route
from service.health_metrics import HealthMetrics
from service.kafka_parser import RawBatchParser
from service.kafka_security import broker_security, client_kwargs
from service.metrics import Metrics
from service.overlap import OverlappedWriter, Seek
from service.partition_guard import PartitionGuard
from service.pipeline import BatchProcessor, BatchReport, Ownership
from service.positions import OnAheadOfLog, OnRecordsLost
from service.probes import (
    Lifecycle,
    ProgressMonitor,
    consumer_of,
    consumer_task_check,
    database_check,
    kafka_check,
    schema_check,
)
from service.progress import ProgressTracker
from service.rebalance import PositionReader, SeekToStoredPositions
from service.records import Record
from service.retention import purge_forever
from service.retry import Backoff
from service.runtime import tune_gc
from service.schema_check import require_current_schema
from service.topics import ensure_topics

log = logging.getLogger("service.app")
KAFKA_COMMIT_INTERVAL_S = 1.0


async def _raw_records(message: Any) -> Any:
    """Skip FastStream's JSON decoding: the write path validates the raw bytes itself."""
    return message.raw_message


def _flatten(raw: Any) -> list[Record]:
    """The batch's records: aiokafka gives a tuple of them (FastStream's test broker nests
    them in lists), a single record stands alone."""
    if isinstance(raw, tuple | list):
        if not raw or not isinstance(raw[0], tuple | list):
            return list(raw)  # aiokafka: already flat
        return [record for item in raw for record in _flatten(item)]
    return [raw]


class BatchSink(Protocol):
    async def submit(
        self,
        records: Sequence[Record],
        still_owned: Ownership | None = None,
        seek: Seek | None = None,
    ) -> BatchReport | None: ...


def build_broker(
    settings: Settings,
    writer: BatchSink,
    read_positions: PositionReader,
    guard: PartitionGuard | None = None,
) -> KafkaBroker:
    """The broker with its one subscriber: batches of raw records go to `writer`."""
    lenient_fetch.install()  # a header key that is not UTF-8 must not stop a partition
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),  # transport security (issue 8, item 4)
        client_id="inventory-sink",
        graceful_timeout=30.0,
        logger=logging.getLogger("service.broker"),
        log_level=logging.DEBUG,
        # How soon a topic deleted and created again (or new partitions) is noticed.
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
    )
    subscriber = broker.subscriber(
        settings.kafka_topic,
        group_id=settings.kafka_group_id,
        group_instance_id=settings.kafka_group_instance_id or None,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(settings.kafka_session_timeout_ms // 4, 500),
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        # Offsets are committed only after the database transaction: never ACK_FIRST.
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
        listener=SeekToStoredPositions(lambda: subscriber.consumer, read_positions, guard),
        # Item 8: FastStream's batch parser decodes every header and crashes on binary ones.
        parser=RawBatchParser(lambda: subscriber.consumer),
        decoder=_raw_records,
        title="product-events",
        description="Product events, contract v1 (see README).",
    )

    if guard is not None:
        guard.attach(lambda: subscriber.consumer)
    last_kafka_commit = [0.0]

    @subscriber
    async def consume(message: KafkaMessage) -> None:
        consumer = subscriber.consumer

        def still_owned(topic: str, partition: int) -> bool:
            return consumer is None or TopicPartition(topic, partition) in consumer.assignment()

        def seek(tp: tuple[str, int], offset: int) -> None:
            if consumer is not None:
                consumer.seek(TopicPartition(*tp), offset)

        try:
            finished = await writer.submit(_flatten(message.raw_message), still_owned, seek)
        except BaseException:
            # Never move on past an unwritten batch: rewind each partition to its first
            # record of this batch (the write path rewinds further if it must).
            await message.nack()
            raise
        if finished is None or consumer is None or not finished.next_offsets:
            return
        # Kafka's committed offset only mirrors the database's, for lag monitoring; the
        # database is the source of truth, so it is committed at most once a second and a
        # failed commit loses nothing.
        now = time.monotonic()
        if now - last_kafka_commit[0] >= KAFKA_COMMIT_INTERVAL_S:
            last_kafka_commit[0] = now
            owned = consumer.assignment()
            offsets = {
                TopicPartition(*tp): offset
                for tp, offset in finished.next_offsets.items()
                if TopicPartition(*tp) in owned
            }
            try:
                if offsets:
                    await consumer.commit(offsets)
            except Exception as error:
                log.warning(
                    "Kafka offset commit failed (%s); the database keeps the position", error
                )

    return broker


def create_app(settings: Settings | None = None) -> AsgiFastStream:
    settings = settings or get_settings()
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    metrics = Metrics()
    dead_letters = KafkaDeadLetterSink(
        settings.kafka_bootstrap_servers,
        settings.kafka_dlq_topic,
        "inventory-sink-dlq",
        client_kwargs(settings),  # transport security (issue 8, item 4)
    )
    # Stored positions vs the log (issue 8, item 1); `guard.stopped` is for readiness.
    guard = PartitionGuard(
        sessions,
        settings.kafka_group_id,
        metrics.registry,
        OnAheadOfLog(settings.on_position_ahead_of_log),
        OnRecordsLost(settings.on_records_lost_to_retention),
        settings.position_check_interval_s,
    )
    processor = BatchProcessor(
        sessions,
        dead_letters,
        settings.kafka_group_id,
        Backoff(settings.retry_initial_backoff_s, settings.retry_max_backoff_s),
        metrics,
        max_record_bytes=settings.max_record_bytes,
        guard=guard,
    )

    async def read_positions(topics: set[str]) -> dict[tuple[str, int], int]:
        async with sessions() as session:
            return await store.read_positions(session, settings.kafka_group_id, topics)

    writer = OverlappedWriter(processor)
    broker = build_broker(settings, writer, read_positions, guard)

    # Health (issue 8, item 5): liveness = the consume loop runs; readiness = it can do its
    # job and does it. Add checks with `readiness.register(name, check)` (see service/health.py).
    progress = ProgressTracker()
    processor.on_commit.append(lambda report: progress.committed(report.next_offsets))
    subscriber = broker.subscribers[0]
    lifecycle = Lifecycle()
    liveness = Probe("live")
    liveness.register("consumer_task", consumer_task_check(subscriber, lifecycle))
    readiness = Probe("ready", on_verdict=HealthMetrics(metrics.registry, progress).record)
    readiness.register("kafka", kafka_check(broker, settings))
    readiness.register("database", database_check(engine, settings))
    readiness.register("schema", every(settings.schema_check_interval_s, schema_check(engine)))
    monitor = ProgressMonitor(progress, consumer_of(subscriber), read_positions)
    readiness.register("progress", monitor.stall_check(settings.stall_timeout_s))
    readiness.register("stopped_partitions", guard.stopped.problem)
    ready = probe_route(readiness)

    background: list[asyncio.Task[None]] = []

    async def start_up() -> None:
        await require_current_schema(engine)
        await ensure_topics(settings)
        await dead_letters.start()

    async def start_cleanup() -> None:
        tune_gc()  # everything start-up allocated is long-lived: freeze it
        retention_s = settings.processed_event_retention_hours * 3600
        background.append(
            asyncio.create_task(
                purge_forever(sessions, retention_s, settings.processed_event_cleanup_interval_s)
            )
        )
        background.append(asyncio.create_task(guard.run()))

    async def stop_cleanup() -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def shut_down() -> None:
        await writer.drain()  # the subscriber has stopped: let the last batch commit
        await dead_letters.stop()
        await engine.dispose()

    app = AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health", ready),  # the readiness probe, under its old name
            ("/health/ready", ready),
            ("/health/live", probe_route(liveness)),
            ("/metrics", scrape_route(readiness, make_asgi_app(metrics.registry))),
        ],
        on_startup=[start_up],
        after_startup=[start_cleanup, lifecycle.started],
        on_shutdown=[lifecycle.stopping, stop_cleanup],
        after_shutdown=[shut_down],
        asyncapi_path="/docs",
    )
    return app
