"""Fixtures shared by every test layer.

Unit tests need none of the services. Integration and fault tests ask for `pg`/`kafka`,
which come from the environment or testcontainers (see tests/support/services.py) and
fail, never skip, when neither is there.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.config.settings import Settings
from tests.support import mutation_db
from tests.support.cli import service_env
from tests.support.services import PostgresEndpoint, kafka_endpoint, postgres_endpoint

ROOT = Path(__file__).resolve().parent.parent
# One database per test session; TEST_POSTGRES_DB lets parallel sessions use their own.
TEST_DATABASE = os.environ.get("TEST_POSTGRES_DB", "inventory_test")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/containers (a Docker engine, image builds) runs only when named on the command
    line, as scripts/container-test does."""
    if collection_path == ROOT / "tests" / "containers":
        return not any("tests/containers" in str(arg) for arg in config.args)
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """scripts/mutation: a test that hangs under a mutant fails within seconds."""
    if not mutation_db.ENABLED:
        yield
        return
    with mutation_db.time_limit(item.nodeid):
        yield


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresEndpoint]:
    try:
        with postgres_endpoint() as endpoint:
            yield endpoint
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    try:
        with kafka_endpoint() as bootstrap:
            yield bootstrap
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


async def _recreate_database(server: PostgresEndpoint, name: str) -> None:
    try:
        connection = await server.connect()
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"PostgreSQL at {server.host}:{server.port} is not reachable as {server.user!r} "
            f"({error}); start it with `scripts/local-stack up`",
            pytrace=False,
        )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def alembic(pg: PostgresEndpoint, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `alembic` CLI against `pg` (as an operator would), migrating as the role
    that owns the test database, whatever the environment names."""
    env = service_env(pg)
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _migrate(endpoint: PostgresEndpoint) -> None:
    result = alembic(endpoint, "upgrade", "head")
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def pg(pg_server: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    """A fresh database for this test session, migrated to head."""
    if mutation_db.ENABLED:  # scripts/mutation: a copy of a database migrated once
        endpoint = asyncio.run(mutation_db.clone(pg_server, TEST_DATABASE, _migrate))
        yield endpoint
        asyncio.run(mutation_db.drop(pg_server, endpoint.database))
        return
    asyncio.run(_recreate_database(pg_server, TEST_DATABASE))
    endpoint = PostgresEndpoint(
        pg_server.host, pg_server.port, pg_server.user, pg_server.password, TEST_DATABASE
    )
    _migrate(endpoint)
    yield endpoint


@pytest.fixture
def names() -> dict[str, str]:
    """Topic and group names of one test, so tests never see each other's records."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "topic": f"test.events.{suffix}",
        "dlq": f"test.events.{suffix}.dlq",
        "group": f"test-sink-{suffix}",
    }


def make_settings(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], **extra: object
) -> Settings:
    values: dict[str, object] = dict(
        postgres_host=pg.host,
        postgres_port=pg.port,
        postgres_user=pg.user,
        postgres_password=pg.password,
        postgres_db=pg.database,
        # The test database belongs to `pg.user`: it migrates too, whatever the environment says.
        postgres_migration_user=None,
        postgres_migration_password=None,
        kafka_bootstrap_servers=kafka,
        kafka_topic=names["topic"],
        kafka_dlq_topic=names["dlq"],
        kafka_group_id=names["group"],
        kafka_topic_partitions=3,
        batch_max_records=500,
        batch_timeout_ms=100,
        retry_initial_backoff_s=0.1,
        retry_max_backoff_s=2.0,
        http_port=0,
        log_level="INFO",
    )
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(pg: PostgresEndpoint, kafka: str, names: dict[str, str]) -> Settings:
    return make_settings(pg, kafka, names)


@pytest.fixture
async def engine(pg: PostgresEndpoint) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database, with the tables emptied before the test."""
    engine = create_async_engine(pg.url())
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE products, processed_events, consumer_offsets"))
    yield engine
    await engine.dispose()
