"""Commits the database lost under a running consumer are applied again, from the positions
the database holds, on partitions that never get another record too.

What a failover to an asynchronous replica does, played on one server: the consumer applies
a first stream (the replica has it), then a second (only the old primary had it); the test
puts the tables back to their state after the first, as the promoted replica holds them,
without restarting the consumer, and publishes nothing more. Every partition is then quiet:
no batch will ever show the consumer that it is ahead of the database. The consumer must
notice by itself, read the stored positions and apply the second stream again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.kafka.topics import ensure_topics
from testbed.events import record, upsert
from testbed.publish import publish
from tests.integration.test_positions_vs_log import metric, started, wait_for_ids
from tests.support.consumer import ConsumerProcess

PRODUCTS = 60


async def names(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT id, name FROM products"))
        return {pid: name for pid, name in rows}


async def positions(engine: AsyncEngine, group: str) -> dict[int, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT partition, next_offset FROM consumer_offsets WHERE group_id = :g"),
            {"g": group},
        )
        return {partition: offset for partition, offset in rows}


async def wait_for_names(
    engine: AsyncEngine, wanted: dict[int, str], consumer: ConsumerProcess, timeout: float
) -> float:
    started_at = time.monotonic()
    while time.monotonic() - started_at < timeout:
        if await names(engine) == wanted:
            return time.monotonic() - started_at
        assert consumer.alive(), consumer.tail()
        await asyncio.sleep(0.2)
    have = await names(engine)
    wrong = sorted(pid for pid in wanted if have.get(pid) != wanted[pid])
    raise AssertionError(
        f"{len(wrong)} products never got their last event again (e.g. {wrong[:5]})\n"
        f"--- consumer log:\n{consumer.tail()}"
    )


async def test_quiet_partitions_apply_commits_the_database_lost_again(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"progress_check_interval_s": 1.0})
    await ensure_topics(settings)
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.kafka_topic
    first = [record(upsert(pid, 1, name=f"first {pid}")) for pid in range(1, PRODUCTS + 1)]
    await publish(bootstrap, topic, first)
    consumer = started(settings, tmp_path)
    try:
        await wait_for_ids(engine, set(range(1, PRODUCTS + 1)), consumer)
        await wait_for_names(
            engine, {p: f"first {p}" for p in range(1, PRODUCTS + 1)}, consumer, 60
        )
        async with engine.begin() as connection:  # what the replica received
            await connection.execute(text("CREATE TABLE replica_products AS TABLE products"))
            await connection.execute(text("CREATE TABLE replica_offsets AS TABLE consumer_offsets"))
        received = await positions(engine, settings.kafka_group_id)

        second = [record(upsert(pid, 2, name=f"second {pid}")) for pid in range(1, PRODUCTS + 1)]
        await publish(bootstrap, topic, second)
        final = {p: f"second {p}" for p in range(1, PRODUCTS + 1)}
        await wait_for_names(engine, final, consumer, 60)
        committed = await positions(engine, settings.kafka_group_id)
        assert all(committed[p] > received[p] for p in received), (committed, received)

        async with engine.begin() as connection:  # the failover: back to the replica's state
            await connection.execute(text("TRUNCATE products, consumer_offsets"))
            await connection.execute(text("INSERT INTO products SELECT * FROM replica_products"))
            await connection.execute(
                text("INSERT INTO consumer_offsets SELECT * FROM replica_offsets")
            )
            await connection.execute(text("DROP TABLE replica_products, replica_offsets"))
        assert await positions(engine, settings.kafka_group_id) == received

        recovered_s = await wait_for_names(engine, final, consumer, 60)
        assert await positions(engine, settings.kafka_group_id) == committed
        consumer.wait_for_log("PostgreSQL holds positions behind those this consumer committed")
        rolled_back = sum(
            metric(consumer, "inventory_sink_position_rollbacks_total", topic=topic, partition=p)
            for p in map(str, received)
        )
        assert rolled_back == len(received)
        print(
            f"re-applied the lost commits of {len(received)} quiet partitions in {recovered_s:.1f}s"
        )
    finally:
        consumer.kill()
