"""/health/live, /health/ready and the progress metrics of the real service process, asked
over HTTP while it consumes from the real broker into the real database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.kafka.topics import ensure_topics
from service.postgres.schema_gate import alembic_config
from testbed.events import StreamSpec, generate_stream
from testbed.oracle import diff, expected_outcome, table
from testbed.publish import publish
from tests.conftest import make_settings
from tests.support.brokers import throwaway_broker
from tests.support.consumer import ConsumerProcess
from tests.support.scrape import get, samples
from tests.support.services import PostgresEndpoint

READY_CHECKS = {
    "started",
    "kafka",
    "database",
    "schema",
    "progress",
    "stopped_partitions",
    "dead_letters",
}


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    status, body = await get(url)
    return status, json.loads(body)


async def wait_for_status(
    url: str, status: int, consumer: ConsumerProcess, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:
        seen = await get_json(url)
        if seen[0] == status:
            return seen[1]
        assert consumer.alive(), consumer.tail()
        await asyncio.sleep(0.3)
    pytest.fail(f"{url} never answered {status}; last {seen}\n--- log:\n{consumer.tail()}")


async def wait_for_zero_lag(url: str, consumer: ConsumerProcess, partitions: int) -> str:
    """The /metrics text once every partition shows lag 0 (the table can match a moment
    before the consumer has recorded the batch that made it match)."""
    deadline = time.monotonic() + 30
    metrics = ""
    while time.monotonic() < deadline:
        metrics = (await get(f"{url}/metrics"))[1]
        lag = samples(metrics, "inventory_sink_partition_lag")
        if len(lag) == partitions and set(lag.values()) == {0.0}:
            return metrics
        await asyncio.sleep(0.3)
    pytest.fail(f"lag never reached 0 on {partitions} partitions:\n{metrics}\n{consumer.tail()}")


async def wait_for_table(engine: AsyncEngine, pairs: Any, consumer: ConsumerProcess) -> None:
    expected = expected_outcome(pairs).products
    deadline = time.monotonic() + 90
    problems: list[str] = []
    while time.monotonic() < deadline:
        problems = diff(expected, await table(engine))
        if not problems:
            return
        assert consumer.alive(), consumer.tail()
        await asyncio.sleep(0.3)
    pytest.fail("table never matched:\n" + "\n".join(problems[:20]) + "\n" + consumer.tail())


@pytest.fixture
def start(pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Start the service with extra settings; returns (settings, process, base URL)."""
    started: list[ConsumerProcess] = []

    def run(**extra: object) -> tuple[Settings, ConsumerProcess, str]:
        settings = make_settings(pg, kafka, names, http_host="127.0.0.1", **extra)
        process = ConsumerProcess(settings, tmp_path)
        started.append(process)
        process.start()
        return settings, process, process.http_url()

    yield run
    for process in started:
        process.kill()


@pytest.fixture
async def pg_connection(pg: PostgresEndpoint) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    yield connection
    await connection.close()


async def test_live_and_ready_while_consuming_with_zero_lag_once_caught_up(
    start: Any, engine: AsyncEngine, kafka: str, names: dict[str, str], pg: PostgresEndpoint
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    pairs = generate_stream(StreamSpec(events=600, products=30, seed=5))
    await publish(kafka, names["topic"], pairs)
    settings, consumer, url = start()

    await wait_for_table(engine, pairs, consumer)
    metrics = await wait_for_zero_lag(url, consumer, settings.kafka_topic_partitions)
    assert samples(metrics, "inventory_sink_ready") == {"": 1.0}
    assert set(samples(metrics, "inventory_sink_seconds_since_progress").values()) == {0.0}
    lag = samples(metrics, "inventory_sink_partition_lag")
    assert all(f'topic="{names["topic"]}"' in labels for labels in lag)

    status, ready = await get_json(f"{url}/health/ready")
    assert status == 200, ready
    assert ready["status"] == "ok"
    assert set(ready["checks"]) == READY_CHECKS
    assert all(check == {"ok": True} for check in ready["checks"].values())
    assert await get_json(f"{url}/health") == (200, ready)  # the old name answers the same
    status, live = await get_json(f"{url}/health/live")
    assert (status, live) == (200, {"status": "ok", "checks": {"consumer_task": {"ok": True}}})


async def test_a_stalled_consumer_with_lag_is_unready_but_live_until_it_moves_again(
    start: Any,
    engine: AsyncEngine,
    kafka: str,
    names: dict[str, str],
    pg: PostgresEndpoint,
    pg_connection: asyncpg.Connection,
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    stream = generate_stream(StreamSpec(events=400, products=20, seed=9))
    first, second = stream[:100], stream[100:]
    await publish(kafka, names["topic"], first)
    settings, consumer, url = start(stall_timeout_s=3.0)
    await wait_for_table(engine, first, consumer)
    await wait_for_status(f"{url}/health/ready", 200, consumer)

    # Hold the lock every batch needs to store its positions: nothing can commit.
    transaction = pg_connection.transaction()
    await transaction.start()
    try:
        await pg_connection.execute("LOCK TABLE consumer_offsets IN EXCLUSIVE MODE")
        await publish(kafka, names["topic"], second)
        began = time.monotonic()
        body = await wait_for_status(f"{url}/health/ready", 503, consumer, timeout=60)
        assert time.monotonic() - began >= 3.0  # not before STALL_TIMEOUT_S
        assert body["status"] == "unavailable"
        problem = body["checks"]["progress"]["problem"]
        assert "stalled with lag" in problem and names["topic"] in problem, problem
        assert "STALL_TIMEOUT_S=3" in problem
        assert {name for name, check in body["checks"].items() if check["ok"]} == {
            "started",
            "kafka",
            "database",
            "schema",
            "stopped_partitions",  # held back by a lock, not stopped
            "dead_letters",
        }
        status, live = await get_json(f"{url}/health/live")
        assert status == 200, live
        assert (await get(f"{url}/health"))[0] == 503

        status, metrics = await get(f"{url}/metrics")
        lag = samples(metrics, "inventory_sink_partition_lag")
        since = samples(metrics, "inventory_sink_seconds_since_progress")
        assert sum(lag.values()) > 0, metrics
        assert max(since.values()) >= 3.0, metrics
        assert samples(metrics, "inventory_sink_ready") == {"": 0.0}
        assert samples(metrics, "inventory_sink_ready_check")['{check="progress"}'] == 0.0
        # Nothing of the second part reached the table.
        assert diff(expected_outcome(first).products, await table(engine)) == []
        consumer.wait_for_log("ready: the progress check fails: stalled with lag")
    finally:
        await transaction.rollback()

    await wait_for_status(f"{url}/health/ready", 200, consumer, timeout=60)
    await wait_for_table(engine, stream, consumer)
    consumer.wait_for_log("ready: the progress check passes again")
    await wait_for_status(f"{url}/health/ready", 200, consumer)
    await wait_for_zero_lag(url, consumer, settings.kafka_topic_partitions)


async def test_a_schema_the_code_cannot_use_makes_the_running_consumer_unready(
    start: Any,
    engine: AsyncEngine,
    kafka: str,
    names: dict[str, str],
    pg: PostgresEndpoint,
    pg_connection: asyncpg.Connection,
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    _, consumer, url = start(schema_check_interval_s=0.5)
    await wait_for_status(f"{url}/health/ready", 200, consumer)
    head = await pg_connection.fetchval("SELECT version_num FROM alembic_version")
    older = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(older, str)

    # Someone rolls the schema back (stamped here: only the recorded revision matters).
    await pg_connection.execute("UPDATE alembic_version SET version_num = $1", older)
    try:
        body = await wait_for_status(f"{url}/health/ready", 503, consumer, timeout=30)
        problem = body["checks"]["schema"]["problem"]
        assert older in problem and "migrate" in problem, problem
        assert body["checks"]["progress"] == {"ok": True}
        assert (await get(f"{url}/health/live"))[0] == 200
    finally:
        await pg_connection.execute("UPDATE alembic_version SET version_num = $1", head)
    await wait_for_status(f"{url}/health/ready", 200, consumer, timeout=30)


async def test_postgresql_refusing_connections_makes_it_unready_but_live(
    start: Any, kafka: str, names: dict[str, str], pg: PostgresEndpoint, pg_server: PostgresEndpoint
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    _, consumer, url = start()
    await wait_for_status(f"{url}/health/ready", 200, consumer)

    # From the server's own database: a session cannot lock itself out of its database.
    admin = await asyncpg.connect(pg_server.url(driver="postgresql"))
    database = pg.database
    await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
        body = await wait_for_status(f"{url}/health/ready", 503, consumer, timeout=30)
        problem = body["checks"]["database"]["problem"]
        assert f"cannot query PostgreSQL at {pg.host}:{pg.port}" in problem, problem
        assert "POSTGRES_HOST" in problem
        # (the local stack's password is also a prefix of the database's name)
        assert pg.password not in problem.replace(f'"{pg.database}"', '"<db>"'), problem
        assert body["checks"]["kafka"] == {"ok": True}
        assert (await get(f"{url}/health/live"))[0] == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    await wait_for_status(f"{url}/health/ready", 200, consumer, timeout=30)


async def test_a_read_only_database_makes_it_unready_naming_it_until_it_takes_writes(
    start: Any,
    engine: AsyncEngine,
    kafka: str,
    names: dict[str, str],
    pg: PostgresEndpoint,
    pg_server: PostgresEndpoint,
) -> None:
    """As a replica not yet promoted answers: reads work, every write is refused (25006)."""
    await ensure_topics(make_settings(pg, kafka, names))
    stream = generate_stream(StreamSpec(events=300, products=20, seed=13))
    first, second = stream[:100], stream[100:]
    await publish(kafka, names["topic"], first)
    _, consumer, url = start()
    await wait_for_table(engine, first, consumer)
    await wait_for_status(f"{url}/health/ready", 200, consumer)

    admin = await asyncpg.connect(pg_server.url(driver="postgresql"))
    database = pg.database
    await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    try:
        # Sessions read the setting when they start: the service reconnects to a read-only one.
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
        await publish(kafka, names["topic"], second)
        body = await wait_for_status(f"{url}/health/ready", 503, consumer, timeout=30)
        problem = body["checks"]["database"]["problem"]
        assert f"PostgreSQL at {pg.host}:{pg.port} is read-only" in problem, problem
        assert "default_transaction_read_only" in problem, problem
        assert (await get(f"{url}/health/live"))[0] == 200
        consumer.wait_for_log("read-only transaction")  # the batch's retries say why
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
        await admin.close()
        await engine.dispose()  # the test's own connections were cut too
    await wait_for_table(engine, stream, consumer)
    await wait_for_status(f"{url}/health/ready", 200, consumer, timeout=30)


async def test_kafka_going_away_makes_it_unready_but_live(
    pg: PostgresEndpoint, names: dict[str, str], tmp_path: Path
) -> None:
    with throwaway_broker() as broker:
        settings = make_settings(
            pg, broker.bootstrap, names, http_host="127.0.0.1", kafka_topic_partitions=1
        )
        await ensure_topics(settings)
        consumer = ConsumerProcess(settings, tmp_path)
        consumer.start()
        try:
            url = consumer.http_url()
            await wait_for_status(f"{url}/health/ready", 200, consumer)
        except BaseException:
            consumer.kill()
            raise
    try:  # the broker is gone
        body = await wait_for_status(f"{url}/health/ready", 503, consumer, timeout=30)
        problem = body["checks"]["kafka"]["problem"]
        assert f"cannot reach Kafka at {broker.bootstrap}" in problem, problem
        assert "KAFKA_BOOTSTRAP_SERVERS" in problem
        assert body["checks"]["database"] == {"ok": True}
        status, live = await get_json(f"{url}/health/live")
        assert status == 200, live
    finally:
        consumer.kill()
