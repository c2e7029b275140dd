"""The FastStream application: a Kafka batch subscriber feeding the write path.

Run it with `python -m service run` (FastStream's own CLI would need `faststream[cli]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsyncAPIRoute
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer, KafkaMessage
from prometheus_client import make_asgi_app
from pydantic import SecretStr

from service.config.settings import Settings, get_settings
from service.core.position_verdict import OnAheadOfLog, OnRecordsLost
from service.core.records import TopicAndPartition
from service.health.checks import (
    Lifecycle,
    consumer_of,
    consumer_task_check,
    database_check,
    kafka_check,
    schema_check,
    started_check,
)
from service.health.collector import HealthMetrics
from service.health.position_watch import PositionWatch
from service.health.probe import Probe, every, probe_route, scrape_route
from service.health.progress import ProgressTracker
from service.kafka import lenient_fetch
from service.kafka.asyncapi import EventBatch, contract_asyncapi, declare_dead_letters
from service.kafka.dead_letter_producer import KafkaDeadLetterSink
from service.kafka.parser import RawBatchParser
from service.kafka.security import broker_security
from service.kafka.topics import ensure_topics
from service.observability.metrics import Metrics
from service.positions.guard import PartitionGuard
from service.positions.rebalance import SeekToStoredPositions
from service.postgres import consumer_offsets
from service.postgres.engine import make_engine, make_session_factory
from service.postgres.retention import purge_forever
from service.postgres.schema_gate import require_current_schema
from service.write_path.handler import BatchHandler
from service.write_path.letter_stops import LetterStops
from service.write_path.overlap import OverlappedWriter
from service.write_path.retry import Backoff
from service.write_path.transaction import WritePath

if TYPE_CHECKING:
    from faststream.types import Lifespan

# A batch creates tens of thousands of short-lived objects (events, states, parameters),
# freed by reference counting. With CPython's default threshold (700) the cyclic collector
# runs hundreds of times per batch and re-scans every long-lived object (imports, schemas,
# pools) on each full pass: profiling showed validation running 2-3x slower than in
# isolation. A higher first threshold and freezing what start-up allocated remove that.
# 200k rather than 50k: a 5000-event batch holds ~100k objects at its peak, so a lower
# threshold still ran one young collection per batch that scanned all of them (~7 ms).
GC_THRESHOLD = (200_000, 20, 100)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


@asynccontextmanager
async def background(*jobs: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `jobs` (loops that never end by themselves) as tasks inside the block; on leaving
    it, cancel them and wait until they have ended."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _raw_records(message: Any) -> Any:
    """Skip FastStream's JSON decoding: the write path validates the raw bytes itself."""
    return message.raw_message


def build_broker(settings: Settings, handler: BatchHandler, guard: PartitionGuard) -> KafkaBroker:
    """The broker with its one subscriber: batches of raw records go to `handler`; `guard`
    checks each assigned partition's stored position and resumes it there."""
    lenient_fetch.install()  # a header key that is not UTF-8 must not stop a partition
    broker = KafkaBroker(
        settings.kafka_brokers,
        security=broker_security(settings),  # TLS and SASL, as every client
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
        listener=SeekToStoredPositions(guard),
        # FastStream's batch parser decodes every header and crashes on binary ones.
        parser=RawBatchParser(lambda: subscriber.consumer),
        decoder=_raw_records,
        title="product-events",
        description="Product events, contract v1: the JSON value of each record, keyed by its "
        "product id (contract/product-event.v1.schema.json, docs/reference/contract.md).",
    )
    guard.attach(lambda: subscriber.consumer)
    declare_dead_letters(broker, settings.kafka_dlq_topic)

    @subscriber
    async def consume(records: EventBatch, message: KafkaMessage, consumer: Consumer) -> None:
        # `records` (the raw batch, passed through) is here to document the payload.
        await handler(message, consumer)

    return broker


def build_app(
    broker: KafkaBroker,
    handler: BatchHandler,
    lifecycle: Lifecycle,
    lifespan: Lifespan | None = None,
    routes: Sequence[tuple[str, Any]] = (),
) -> AsgiFastStream:
    """The application around the broker. FastStream stops it in this order: `on_shutdown`,
    then `broker.stop()` (the consumer stops and leaves its group), then the lifespan's exit.
    The batch in flight is therefore finished and committed in `on_shutdown`."""
    consumer = consumer_of(broker.subscribers[0])

    async def serving() -> None:
        tune_gc()  # everything start-up allocated is long-lived: freeze it
        await lifecycle.started()

    async def finish_in_flight() -> None:
        await lifecycle.stopping()
        await handler.close(consumer())  # the consumer still owns its partitions here

    return AsgiFastStream(
        broker,
        asgi_routes=routes,
        lifespan=lifespan,
        after_startup=[serving],
        on_shutdown=[finish_in_flight],
        specification=contract_asyncapi(broker),
        # The document at /docs and /docs.json; no "try it out" (/docs/try), which would let
        # anyone who reaches the HTTP port publish to the topics through the consumer's broker.
        asyncapi_path=AsyncAPIRoute("/docs", try_it_out_path=None),
    )


def create_app(settings: Settings | None = None) -> AsgiFastStream:
    settings = settings or get_settings()
    # A consumer frozen mid-transaction (a stopped VM, a long pause) past the session timeout
    # has lost its partitions to another member, but its transaction still holds their
    # positions locked: the new owner would wait for it, and on waking it would commit a
    # batch of partitions it no longer owns. PostgreSQL ends such a transaction once it has
    # waited as long as the group waits for a silent member; an awake consumer never leaves
    # one idle that long, not even while the dead-letter topic is slow to acknowledge (the
    # write path keeps asking the server meanwhile).
    engine = make_engine(settings, idle_in_transaction_ms=settings.kafka_session_timeout_ms)
    sessions = make_session_factory(engine)
    metrics = Metrics()
    # Stored positions vs the log; `guard.stopped` is for readiness.
    guard = PartitionGuard(
        sessions,
        settings.kafka_group_id,
        metrics.registry,
        OnAheadOfLog(settings.on_position_ahead_of_log),
        OnRecordsLost(settings.on_records_lost_to_retention),
        settings.position_check_interval_s,
    )
    # Partitions whose dead letter the DLQ topic refuses in every form; held back like the
    # guard's stopped partitions (the write path asks both through `letter_stops`).
    letter_stops = LetterStops(guard)
    dead_letters = KafkaDeadLetterSink(settings, "inventory-sink-dlq", metrics, letter_stops)
    write_path = WritePath(
        sessions,
        dead_letters,
        settings.kafka_group_id,
        Backoff(settings.retry_initial_backoff_s, settings.retry_max_backoff_s),
        metrics,
        max_record_bytes=settings.max_record_bytes,
        guard=letter_stops,
        session_timeout_s=settings.kafka_session_timeout_ms / 1000,
    )

    async def read_positions(topics: set[str]) -> dict[TopicAndPartition, int]:
        async with sessions() as session:
            return await consumer_offsets.read_positions(session, settings.kafka_group_id, topics)

    writer = OverlappedWriter(write_path)
    handler = BatchHandler(writer)
    broker = build_broker(settings, handler, guard)
    subscriber = broker.subscribers[0]

    # The database is the only source of positions: lag, stalls and lost commits are all
    # measured from what PostgreSQL holds (service/health/position_watch.py).
    progress = ProgressTracker()
    watch = PositionWatch(
        progress,
        consumer_of(subscriber),
        read_positions,
        guard.recheck,
        letter_stops.holds,
        metrics.registry,
        settings.progress_check_interval_s,
    )
    write_path.on_commit.append(lambda report: progress.committed(report.next_offsets))
    write_path.on_recovery.append(watch.wake)
    guard.on_resume.append(progress.resumed)
    guard.on_resume.append(lambda tp, _offset: writer.forget(tp))

    # Health: started = the consumer has started; liveness = its consume loop runs (and a
    # start does not hang); readiness = it has started, can do its job and does it. Add
    # checks with `readiness.register(name, check)` (see service/health/probe.py).
    lifecycle = Lifecycle()
    liveness = Probe("live")
    liveness.register(
        "consumer_task", consumer_task_check(subscriber, lifecycle, settings.start_timeout_s)
    )
    startup = Probe("started")  # the startup probe: passes once the consumer has started
    startup.register("started", started_check(lifecycle))
    readiness = Probe("ready", on_verdict=HealthMetrics(metrics.registry, progress).record)
    readiness.register("started", started_check(lifecycle))
    readiness.register("kafka", kafka_check(settings))
    readiness.register("database", database_check(engine, settings))
    readiness.register("schema", every(settings.schema_check_interval_s, schema_check(engine)))
    readiness.register("progress", watch.stall_check(settings.stall_timeout_s))
    readiness.register("stopped_partitions", guard.stopped.problem)
    readiness.register("dead_letters", letter_stops.problem)
    letter_stops.attach(consumer_of(subscriber))
    ready = probe_route(readiness)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        """What the broker needs before it starts, and gives back after it has stopped."""
        retention_s = settings.processed_event_retention_hours * 3600
        try:
            await require_current_schema(engine)
            await ensure_topics(settings)
            await dead_letters.start()
            try:
                async with background(
                    purge_forever(
                        sessions, retention_s, settings.processed_event_cleanup_interval_s
                    ),
                    guard.run(),  # stored positions vs the log, while the consumer runs
                    watch.run(),  # lag, stalls and lost commits, from the stored positions
                ):
                    yield
            except BaseException:
                # The start failed (service/cli/serving.py ends the process): FastStream's own
                # shutdown of the broker was cut short, and would leave its producer open.
                with contextlib.suppress(Exception):
                    await broker.stop()
                raise
            finally:
                await dead_letters.stop()
        finally:
            await engine.dispose()

    routes = [
        ("/health", ready),  # the readiness probe, under its old name
        ("/health/ready", ready),
        ("/health/live", probe_route(liveness)),
        ("/health/started", probe_route(startup)),
        ("/metrics", scrape_route(readiness, make_asgi_app(metrics.registry))),
    ]
    return build_app(broker, handler, lifecycle, lifespan, routes)


def documentation_app() -> AsgiFastStream:
    """The app as contract/asyncapi.yaml documents it: the default topics and the local broker,
    nothing read from the environment; it connects to nothing. Regenerate the file with
    `faststream docs gen --yaml --factory service.app:documentation_app -o contract/asyncapi.yaml`.
    """
    settings = Settings.model_construct(
        kafka_bootstrap_servers="127.0.0.1:9092",
        postgres_user="inventory",
        postgres_password=SecretStr("unused"),
        postgres_db="inventory",
    )
    return create_app(settings)
