"""The consumer's role holds exactly the privileges its statements use.

A throwaway cluster logs every statement of the consumer's role (ALTER ROLE ... SET
log_statement = 'all'; the owner's migrations and the test's own queries are not logged).
The real service runs as that role: it applies the sample stream (upserts, stock adjustments,
a delete, a duplicate, records for the dead-letter topic), and its retention loop, with a short
window and interval, purges the processed event ids. Then every CLI command runs as that role.
Each logged statement's privileges (tests/support/statement_log.py) are compared with what
PostgreSQL's ACLs give the role (tests/support/grants.py), both ways: a grant no statement
uses fails the test, and so does a statement no grant allows.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.cli.sample import sample_events
from service.config.settings import Settings
from testbed.oracle import diff, expected_outcome, table
from tests.conftest import make_settings
from tests.support.cli import run_cli, run_service, service_env
from tests.support.consumer import ConsumerProcess
from tests.support.grants import effective_grants
from tests.support.postgres_cluster import Cluster, throwaway_postgres
from tests.support.services import PostgresEndpoint
from tests.support.statement_log import LOG_LINE_PREFIX, needed_privileges, statements

OWNER, CONSUMER, DATABASE = "sink_owner", "sink_consumer", "inventory"


async def _superuser(cluster: Cluster) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=str(cluster.socket_dir), port=cluster.port, user="postgres", database="postgres"
    )


async def _create_roles(cluster: Cluster, owner_password: str, consumer_password: str) -> None:
    connection = await _superuser(cluster)
    try:
        await connection.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{owner_password}'")
        await connection.execute(f"CREATE ROLE {CONSUMER} LOGIN PASSWORD '{consumer_password}'")
        await connection.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER}")
        # Only the consumer's role: what it sends is what the grants are compared with.
        await connection.execute(f"ALTER ROLE {CONSUMER} SET log_statement = 'all'")
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def logged() -> Iterator[tuple[Cluster, PostgresEndpoint, PostgresEndpoint]]:
    """(cluster, owner, consumer): a database the owner migrated, the consumer's role logged."""
    hba = ["host all all 127.0.0.1/32 scram-sha-256"]
    with throwaway_postgres(hba=hba, settings={"log_line_prefix": LOG_LINE_PREFIX}) as cluster:
        owner_password, consumer_password = secrets.token_hex(12), secrets.token_hex(12)
        asyncio.run(_create_roles(cluster, owner_password, consumer_password))
        owner = PostgresEndpoint(cluster.host, cluster.port, OWNER, owner_password, DATABASE)
        app = PostgresEndpoint(cluster.host, cluster.port, CONSUMER, consumer_password, DATABASE)
        migrated = run_service(service_env(app, owner), "migrate")
        assert migrated.returncode == 0, migrated.stderr
        yield cluster, owner, app


def _cli(settings: Settings, failures: list[str], *args: str) -> str:
    """Run a command; a failure is noted, and reported after the grants (a missing grant
    fails commands, and the comparison names it)."""
    result = run_cli(settings, *args)
    if result.returncode != 0:
        failures.append(f"`{' '.join(args)}` exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


async def _wait(owner: PostgresEndpoint, consumer: ConsumerProcess, runs: list[str]) -> str | None:
    """Until the table is the outcome of the samples of `runs` and the retention loop forgot
    every event id; what is still wrong if that never happens."""
    pairs = [pair for run in runs for pair in sample_events(run)]
    expected = expected_outcome(pairs).products
    engine = create_async_engine(owner.url())
    problems: list[str] = ["nothing read yet"]
    remembered: int | None = None
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and consumer.alive():
            problems = diff(expected, await table(engine))
            async with engine.connect() as connection:
                remembered = await connection.scalar(text("SELECT count(*) FROM processed_events"))
            if not problems and remembered == 0 and "forgot" in consumer.tail(400):
                return None
            await asyncio.sleep(0.3)
    finally:
        await engine.dispose()
    return f"table: {problems}; processed ids left: {remembered}\n--- consumer:\n{consumer.tail()}"


def test_the_consumer_role_holds_exactly_what_its_statements_use(
    logged: tuple[Cluster, PostgresEndpoint, PostgresEndpoint],
    kafka: str,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    cluster, owner, app = logged
    settings = make_settings(
        app,
        kafka,
        names,
        postgres_migration_user=owner.user,
        postgres_migration_password=owner.password,
        # The retention loop runs every half second and forgets ids older than ~0.4 s.
        processed_event_retention_hours=0.0001,
        processed_event_cleanup_interval_s=0.5,
    )
    failures: list[str] = []
    _cli(settings, failures, "create-topics")
    runs = [f"{names['group']}-1", f"{names['group']}-2"]
    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    try:
        # The first run inserts the products, the second updates them (its upserts are stale,
        # its stock adjustments apply) in a later batch.
        for done in (1, 2):
            _cli(settings, failures, "publish", "--sample", "--run", runs[done - 1])
            if problem := asyncio.run(_wait(owner, consumer, runs[:done])):
                failures.append(problem)
        # Every command that reads the database, while the consumer runs.
        shown = _cli(settings, failures, "show")
        _cli(settings, failures, "show", "--live")
        _cli(settings, failures, "lag")
        _cli(settings, failures, "dead-letters")
        _cli(settings, failures, "dead-letters", "--count")
        _cli(settings, failures, "dead-letters", "replay", "--all", "--dry-run")
        _cli(settings, failures, "positions")
        _cli(settings, failures, "positions", "reset", "--all", "--to", "log-start", "--dry-run")
        stopped = consumer.stop()
    finally:
        consumer.kill()
    # A reset that writes (it refuses while the group has members: the consumer has left).
    _cli(settings, failures, "positions", "reset", "--partition", "0", "--to", "log-start")

    logged_statements = statements(cluster.log, app.user)
    assert any("DELETE FROM processed_events" in sql for sql in logged_statements)
    needed: dict[tuple[str, str], str] = {}
    for sql in logged_statements:
        for grant in needed_privileges(sql):
            needed.setdefault(grant, sql)
    granted = asyncio.run(_grants(owner, app.user))

    unused = sorted(granted - set(needed))
    missing = sorted(set(needed) - granted)
    report = [f"granted, never used: {obj} {privilege}" for obj, privilege in unused]
    report += [
        f"used without a grant: {obj} {privilege}, by: {' '.join(needed[obj, privilege].split())}"
        for obj, privilege in missing
    ]
    assert not report, "\n".join(report + failures)
    assert not failures, "\n".join(failures)
    assert stopped == 0, consumer.tail()
    assert "(3 rows)" in shown
    assert asyncio.run(_next_offset(owner, settings.kafka_group_id, 0)) == 0


async def _grants(owner: PostgresEndpoint, role: str) -> set[tuple[str, str]]:
    connection = await owner.connect()
    try:
        return await effective_grants(connection, role)
    finally:
        await connection.close()


async def _next_offset(owner: PostgresEndpoint, group: str, partition: int) -> int | None:
    connection = await owner.connect()
    try:
        value = await connection.fetchval(
            "SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND partition = $2",
            group,
            partition,
        )
        return None if value is None else int(value)
    finally:
        await connection.close()
