"""Stored positions that no longer match Kafka's log, on the real services.

The consumer applies a first stream and stops. Then Kafka forgets: the topic is deleted and
created again, or a fresh cluster takes its place, and new events are published. The stored
positions now name offsets of another log: nothing may be skipped silently. Also: retention
deleting records before they were applied is counted and logged.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.kafka.topic_ids import topic_ids
from service.kafka.topics import ensure_topics, partitions_of
from testbed.environment import settings_env
from testbed.events import record, upsert
from testbed.publish import publish
from tests.conftest import make_settings
from tests.support.brokers import free_port, throwaway_broker
from tests.support.consumer import ROOT, ConsumerProcess
from tests.support.services import PostgresEndpoint

CHECK_INTERVAL_S = 1.0


def events(first_id: int, count: int, run: str) -> list[tuple[bytes, bytes]]:
    return [
        record(upsert(pid, 1, name=f"{run} {pid}")) for pid in range(first_id, first_id + count)
    ]


async def product_ids(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as connection:
        return set((await connection.execute(text("SELECT id FROM products"))).scalars())


async def wait_for_ids(
    engine: AsyncEngine, wanted: set[int], consumer: ConsumerProcess, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted <= await product_ids(engine):
            return
        assert consumer.alive(), consumer.tail()
        await asyncio.sleep(0.3)
    missing = sorted(wanted - await product_ids(engine))
    pytest.fail(f"products {missing} never arrived\n--- consumer log:\n{consumer.tail()}")


def started(settings: Settings, tmp_path: Path, name: str = "consumer") -> ConsumerProcess:
    process = ConsumerProcess(settings, tmp_path, name)
    process.env["HTTP_PORT"] = str(free_port())
    process.start()
    return process


def metric(consumer: ConsumerProcess, name: str, **labels: str) -> float:
    """One sample of the consumer's /metrics (0 when absent)."""
    port = consumer.env["HTTP_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in body.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            total += float(match.group(2))
    return total


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def statuses(output: str) -> dict[int, tuple[int | None, int, int, str]]:
    """`positions` table rows: partition -> (stored, log start, log end, status)."""
    rows = {}
    for line in output.splitlines():
        match = re.fullmatch(r"\s*(\d+)\s+(-|\d+)\s+(\d+)\s+(\d+)\s+(\S+)", line)
        if match:
            stored = None if match.group(2) == "-" else int(match.group(2))
            rows[int(match.group(1))] = (
                stored,
                int(match.group(3)),
                int(match.group(4)),
                match.group(5),
            )
    return rows


async def recreate_topic(settings: Settings) -> None:
    """Delete KAFKA_TOPIC and create it again (what `docker compose down && up` did)."""
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.kafka_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        deadline = time.monotonic() + 60
        while topic in await admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} was never deleted"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    deadline = time.monotonic() + 60
    while len(await partitions_of(settings, topic)) != settings.kafka_topic_partitions:
        assert time.monotonic() < deadline, f"{topic} was never created again"
        await ensure_topics(settings)
        await asyncio.sleep(0.3)


async def first_run(
    settings: Settings, engine: AsyncEngine, tmp_path: Path, count: int
) -> dict[int, int]:
    """Apply `count` events (products 1..count) and stop; returns the stored positions."""
    await ensure_topics(settings)
    await publish(settings.kafka_bootstrap_servers, settings.kafka_topic, events(1, count, "old"))
    consumer = started(settings, tmp_path, "first")
    try:
        await wait_for_ids(engine, set(range(1, count + 1)), consumer)
    finally:
        assert consumer.stop() == 0, consumer.tail()
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT partition, next_offset FROM consumer_offsets WHERE group_id = :g"),
            {"g": settings.kafka_group_id},
        )
        return {partition: offset for partition, offset in rows}


@pytest.fixture
def processes() -> Iterator[list[ConsumerProcess]]:
    started_here: list[ConsumerProcess] = []
    yield started_here
    for process in started_here:
        process.kill()


def settings_for(
    pg: PostgresEndpoint, bootstrap: str, names: dict[str, str], **extra: object
) -> Settings:
    return make_settings(
        pg,
        bootstrap,
        names,
        position_check_interval_s=CHECK_INTERVAL_S,
        kafka_metadata_max_age_ms=2000,
        **extra,
    )


async def _stopped_then_reset(
    settings: Settings,
    engine: AsyncEngine,
    tmp_path: Path,
    processes: list[ConsumerProcess],
    new_ids: set[int],
    status: str,
    consumer: ConsumerProcess | None = None,
) -> None:
    """With the default policy: every partition is stopped loudly, nothing new is written,
    `positions` shows why; `positions reset` (dry run first) then lets all new events in."""
    if consumer is None:
        consumer = started(settings, tmp_path, "second")
        processes.append(consumer)
    partitions = range(settings.kafka_topic_partitions)
    consumer.wait_for_log("The partition is stopped")
    deadline = time.monotonic() + 30
    while sum(
        metric(
            consumer,
            "inventory_sink_partition_stopped",
            topic=settings.kafka_topic,
            partition=str(p),
        )
        for p in partitions
    ) < len(partitions):
        assert time.monotonic() < deadline, consumer.tail()
        await asyncio.sleep(0.3)
    await asyncio.sleep(2 * CHECK_INTERVAL_S)  # time enough to (wrongly) write something
    assert not new_ids & await product_ids(engine), "a stopped partition was written"

    log = consumer.log_path.read_text()
    errors = [line for line in log.splitlines() if "The partition is stopped" in line]
    assert len(errors) == len(partitions), log
    for line in errors:
        assert " ERROR service.positions" in line
        assert "The partition is stopped" in line
        assert re.search(r"positions reset --partition \d --to log-start", line)
        assert "log start 0, log end" in line

    shown = cli(settings, "positions")
    assert shown.returncode == 1, shown.stdout + shown.stderr
    table = statuses(shown.stdout)
    assert set(table) == set(partitions), shown.stdout
    assert {row[3] for row in table.values()} == {status}

    dry = cli(settings, "positions", "reset", "--all", "--to", "log-start", "--dry-run")
    assert dry.returncode == 0 and "dry run: nothing changed" in dry.stdout, dry.stdout
    assert statuses(cli(settings, "positions").stdout) == table

    done = cli(settings, "positions", "reset", "--all", "--to", "log-start")
    assert done.returncode == 0, done.stdout + done.stderr
    await wait_for_ids(engine, new_ids, consumer)  # the running consumer picks it up
    after = cli(settings, "positions")
    assert after.returncode == 0, after.stdout
    assert {row[3] for row in statuses(after.stdout).values()} == {"ok"}
    assert consumer.stop() == 0, consumer.tail()


async def test_a_recreated_topic_stops_loudly_and_an_operator_reset_applies_every_new_event(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    engine: AsyncEngine,
    tmp_path: Path,
    processes: list[ConsumerProcess],
) -> None:
    settings = settings_for(pg, kafka, names)
    await first_run(settings, engine, tmp_path, 60)
    await recreate_topic(settings)
    await publish(kafka, settings.kafka_topic, events(101, 30, "new"))
    await _stopped_then_reset(
        settings, engine, tmp_path, processes, set(range(101, 131)), "topic-id-changed"
    )
    assert await product_ids(engine) == set(range(1, 61)) | set(range(101, 131))


async def test_a_topic_recreated_under_a_running_consumer_is_caught_as_well(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    engine: AsyncEngine,
    tmp_path: Path,
    processes: list[ConsumerProcess],
) -> None:
    settings = settings_for(pg, kafka, names)
    await ensure_topics(settings)
    await publish(kafka, settings.kafka_topic, events(1, 60, "old"))
    consumer = started(settings, tmp_path, "running")
    processes.append(consumer)
    await wait_for_ids(engine, set(range(1, 61)), consumer)
    await recreate_topic(settings)
    await publish(kafka, settings.kafka_topic, events(101, 30, "new"))
    await _stopped_then_reset(
        settings,
        engine,
        tmp_path,
        processes,
        set(range(101, 131)),
        "topic-id-changed",
        consumer,
    )
    assert await product_ids(engine) == set(range(1, 61)) | set(range(101, 131))


async def test_a_recreated_topic_restarts_from_the_log_start_with_the_automatic_policy(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    engine: AsyncEngine,
    tmp_path: Path,
    processes: list[ConsumerProcess],
) -> None:
    settings = settings_for(pg, kafka, names, on_position_ahead_of_log="restart-from-log-start")
    stored = await first_run(settings, engine, tmp_path, 60)
    assert sum(stored.values()) == 60
    await recreate_topic(settings)
    await publish(kafka, settings.kafka_topic, events(101, 30, "new"))

    consumer = started(settings, tmp_path, "second")
    processes.append(consumer)
    await wait_for_ids(engine, set(range(101, 131)), consumer)
    log = consumer.log_path.read_text()
    assert "restart-from-log-start" in log and "but the topic now has id" in log, log
    assert "The partition is stopped" not in log
    shown = cli(settings, "positions")
    assert shown.returncode == 0, shown.stdout
    table = statuses(shown.stdout)
    ends = {p: row[2] for p, row in table.items()}
    assert {row[3] for row in table.values()} == {"ok"}
    assert {p: row[0] for p, row in table.items()} == ends  # everything of the new log
    # Partition 2 holds more new records (15) than its old position (12): only the topic id
    # tells that its offsets 0..11 are new records. Every partition restarted at 0.
    assert stored[2] < ends[2]
    moved = metric(
        consumer,
        "inventory_sink_position_resets_total",
        topic=settings.kafka_topic,
        status="topic-id-changed",
    )
    assert moved == settings.kafka_topic_partitions
    assert consumer.stop() == 0, consumer.tail()


async def test_a_fresh_kafka_cluster_with_the_old_database_loses_nothing_silently(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    engine: AsyncEngine,
    tmp_path: Path,
    processes: list[ConsumerProcess],
) -> None:
    old = settings_for(pg, kafka, names)
    stored = await first_run(old, engine, tmp_path, 90)
    # A database from before topic ids were stored: only the offsets can tell (each
    # partition's position, 40/31/19, is past the new log's end, 7/8/15).
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE consumer_offsets SET topic_id = NULL"))
    with throwaway_broker() as broker:
        fresh = settings_for(pg, broker.bootstrap, names)
        await ensure_topics(fresh)
        await publish(broker.bootstrap, fresh.kafka_topic, events(101, 30, "new"))
        await _stopped_then_reset(
            fresh, engine, tmp_path, processes, set(range(101, 131)), "ahead-of-log"
        )
    assert await product_ids(engine) == set(range(1, 91)) | set(range(101, 131))
    assert sum(stored.values()) == 90


@pytest.mark.parametrize("policy", ["continue", "stop"])
async def test_records_deleted_by_retention_before_they_were_applied_are_counted_and_named(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    engine: AsyncEngine,
    tmp_path: Path,
    processes: list[ConsumerProcess],
    policy: str,
) -> None:
    settings = settings_for(
        pg, kafka, names, kafka_topic_partitions=1, on_records_lost_to_retention=policy
    )
    assert await first_run(settings, engine, tmp_path, 10) == {0: 10}
    await publish(kafka, settings.kafka_topic, events(11, 20, "later"))  # offsets 10..29
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:  # retention: the log now starts at 25, so 10..24 were never applied
        await admin.delete_records({TopicPartition(settings.kafka_topic, 0): RecordsToDelete(25)})
    finally:
        await admin.close()

    consumer = started(settings, tmp_path, "second")
    processes.append(consumer)
    consumer.wait_for_log("deleted offsets 10..24 (15 records)")
    lost = metric(
        consumer, "inventory_sink_offsets_lost_total", topic=settings.kafka_topic, partition="0"
    )
    assert lost == 15
    line = next(
        line for line in consumer.log_path.read_text().splitlines() if "offsets 10..24" in line
    )
    assert " ERROR " in line and "below the log start" in line
    if policy == "continue":
        await wait_for_ids(engine, set(range(26, 31)), consumer)  # offsets 25..29
        assert await product_ids(engine) == set(range(1, 11)) | set(range(26, 31))
        assert statuses(cli(settings, "positions").stdout)[0] == (30, 25, 30, "ok")
    else:
        consumer.wait_for_log("The partition is stopped")
        assert "accept the loss" in line and "--partition 0 --to log-start" in line
        await asyncio.sleep(2 * CHECK_INTERVAL_S)
        assert await product_ids(engine) == set(range(1, 11))
        assert statuses(cli(settings, "positions").stdout)[0] == (10, 25, 30, "behind-log-start")
        done = cli(settings, "positions", "reset", "--partition", "0", "--to", "log-start")
        assert done.returncode == 0, done.stdout + done.stderr
        await wait_for_ids(engine, set(range(26, 31)), consumer)
    assert consumer.stop() == 0, consumer.tail()


async def test_topic_ids_name_a_recreated_topic_apart(kafka: str, names: dict[str, str]) -> None:
    settings = Settings(
        postgres_user="unused",
        postgres_password="unused",  # type: ignore[arg-type]
        postgres_db="unused",
        kafka_bootstrap_servers=kafka,
        kafka_topic=names["topic"],
        kafka_dlq_topic=names["dlq"],
        kafka_topic_partitions=1,
    )
    from aiokafka import AIOKafkaConsumer

    await ensure_topics(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        before = await topic_ids(consumer._client, [names["topic"], names["topic"] + ".none"])
        await recreate_topic(settings)
        after = await topic_ids(consumer._client, [names["topic"]])
    finally:
        await consumer.stop()
    assert before[names["topic"] + ".none"] is None
    assert before[names["topic"]] is not None and after[names["topic"]] is not None
    assert before[names["topic"]] != after[names["topic"]]
