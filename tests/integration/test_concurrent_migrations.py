"""Five replicas run `python -m service migrate` at once on an empty database.

The test holds the migration lock itself while the five start, and lets go only once all five
are seen waiting on it in pg_locks: they then really contend, and the test fails if `migrate`
ever stops taking the lock.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from service.postgres.migration_lock import MIGRATION_LOCK_KEY
from service.postgres.schema_gate import head_revision
from tests.conftest import TEST_DATABASE, _recreate_database
from tests.support.cli import service_env, start_service
from tests.support.services import PostgresEndpoint

REPLICAS = 5
TABLES = {
    "alembic_version",
    "products",
    "consumer_offsets",
    "processed_events",
    "schema_compatibility",
}
WAITING = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = $1 AND objid = $2 AND objsubid = 1"
)


async def _wait_until_waiting(connection: asyncpg.Connection, count: int, timeout: float) -> int:
    high, low = MIGRATION_LOCK_KEY >> 32, MIGRATION_LOCK_KEY & 0xFFFFFFFF
    deadline = time.monotonic() + timeout
    waiting = 0
    while time.monotonic() < deadline:
        waiting = await connection.fetchval(WAITING, high, low)
        if waiting >= count:
            break
        await asyncio.sleep(0.1)
    return int(waiting)


async def test_five_concurrent_migrations_all_succeed_and_apply_the_schema_once(
    pg_server: PostgresEndpoint,
) -> None:
    database = f"{TEST_DATABASE}_concurrent"
    await _recreate_database(pg_server, database)
    pg = PostgresEndpoint(
        pg_server.host, pg_server.port, pg_server.user, pg_server.password, database
    )
    env = service_env(pg)

    gate = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        await gate.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        replicas = [start_service(env, "migrate") for _ in range(REPLICAS)]
        waiting = await _wait_until_waiting(gate, REPLICAS, timeout=90)
        await gate.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        outputs = [await asyncio.to_thread(r.communicate, timeout=120) for r in replicas]
        codes = [r.returncode for r in replicas]

        versions = await gate.fetch("SELECT version_num FROM alembic_version")
        tables = await gate.fetch(
            "SELECT tablename, count(*) AS n FROM pg_tables WHERE schemaname = 'public' "
            "GROUP BY tablename"
        )
        marker = await gate.fetch("SELECT revision, min_code_revision FROM schema_compatibility")
    finally:
        await gate.close()

    stderr = "\n".join(err for _, err in outputs)
    assert waiting == REPLICAS, f"only {waiting} of {REPLICAS} waited on the lock:\n{stderr}"
    assert codes == [0] * REPLICAS, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    head = head_revision()
    assert [row["version_num"] for row in versions] == [head]
    counts = {row["tablename"]: row["n"] for row in tables}
    assert set(counts) >= TABLES and set(counts.values()) == {1}, counts
    assert [row["revision"] for row in marker] == [head]
    # The schema was applied once: exactly one replica ran each revision.
    assert stderr.count("Running upgrade  -> 83a471748539") == 1, stderr
    assert stderr.count(f"-> {head},") == 1, stderr
    assert stderr.count("another migration holds the migration lock") == REPLICAS, stderr
