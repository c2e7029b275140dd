"""SIGTERM on the real service: it stops fetching, finishes the batch in flight, commits
(PostgreSQL, then Kafka's mirror of it) and only then stops the consumer, which leaves the
group. README: "SIGTERM stops fetching, finishes the batch in flight, commits, leaves the
group and exits 0"."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli.positions import group_members
from service.config.settings import Settings
from service.kafka.topics import ensure_topics
from testbed.events import LabelledSpec, generate_records
from testbed.oracle import diff, expected_outcome, table
from testbed.publish import publish_acked
from tests.support.consumer import ConsumerProcess

EVENTS = 40_000


async def stored_positions(engine: AsyncEngine, settings: Settings) -> dict[int, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT partition, next_offset FROM consumer_offsets "
                "WHERE group_id = :g AND topic = :t"
            ),
            {"g": settings.kafka_group_id, "t": settings.kafka_topic},
        )
        return {row.partition: row.next_offset for row in rows}


async def kafka_committed(settings: Settings) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.kafka_group_id)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if tp.topic == settings.kafka_topic and meta.offset >= 0
    }


async def test_sigterm_finishes_and_commits_the_batch_in_flight_before_leaving_the_group(
    settings: Settings, engine: AsyncEngine, kafka: str, tmp_path: Path
) -> None:
    # Small batches: many of them, so SIGTERM lands while one is in flight.
    settings = settings.model_copy(update={"batch_max_records": 100})
    await ensure_topics(settings)
    stream = generate_records(LabelledSpec(events=EVENTS, products=400, seed=12))
    acked = await publish_acked(kafka, settings.kafka_topic, stream)

    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    try:
        deadline, signalled_at = time.monotonic() + 120, None
        while signalled_at is None and time.monotonic() < deadline and consumer.alive():
            applied = sum((await stored_positions(engine, settings)).values())
            if EVENTS // 10 < applied < EVENTS // 2:
                assert consumer.process is not None
                consumer.process.send_signal(signal.SIGTERM)
                signalled_at = applied
            await asyncio.sleep(0.01)
        assert signalled_at is not None, f"no work in flight to stop:\n{consumer.tail()}"
        assert consumer.process is not None
        assert consumer.process.wait(60) == 0, consumer.tail()
    finally:
        consumer.kill()

    stored = await stored_positions(engine, settings)
    assert sum(stored.values()) < EVENTS, "the consumer finished the stream before SIGTERM"
    log = consumer.log_path.read_text()

    # The order, as logged: stop fetching, the batch in flight commits, Kafka's offsets.
    stopping = log.index("shutting down: stopped fetching")
    finished = re.search(
        r"shutting down: batch in flight finished \((\d+) records\); Kafka offsets "
        r"committed: (.*); leaving the group",
        log,
    )
    assert finished is not None, consumer.tail()
    assert stopping < finished.start() < log.index("FastStream app shut down gracefully")
    assert int(finished.group(1)) > 0, "SIGTERM found no batch in flight"
    assert "abandoning records of revoked partitions" not in log  # nothing given up
    assert "did not commit within" not in log

    # Committed, in PostgreSQL: the rows are exactly those of the records below the stored
    # positions (rows and positions in one transaction) ...
    applied_records = [
        record
        for record, (partition, offset) in zip(stream, acked, strict=True)
        if offset < stored.get(partition, 0)
    ]
    assert len(applied_records) == sum(stored.values())
    assert diff(expected_outcome(applied_records).products, await table(engine)) == []
    # ... and in Kafka, while the consumer still owned its partitions: Kafka's committed
    # offsets are the stored positions, the last batch's included (after leaving the group
    # the consumer could commit nothing). A partition with nothing applied yet (stored 0)
    # has nothing to mirror.
    assert await kafka_committed(settings) == {p: o for p, o in stored.items() if o > 0}
    # Left the group: no member remains, without waiting for the session timeout.
    assert await group_members(settings) == 0
