"""A benchmark run (bench/runner.py) on the real broker and database writes to a database of
its own, dropped once the run succeeded and kept, to be read, when it failed."""

from __future__ import annotations

import os

import pytest

from bench.runner import Options, run
from bench.target import BENCH_DATABASE
from testbed.run_database import drop_database
from tests.support.services import PostgresEndpoint

OWN = f"{BENCH_DATABASE}_{os.getpid()}"


@pytest.fixture
def bench_env(pg_server: PostgresEndpoint, kafka: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench reads its services from the environment, as `python -m bench` does."""
    for name, value in {
        "POSTGRES_HOST": pg_server.host,
        "POSTGRES_PORT": str(pg_server.port),
        "POSTGRES_USER": pg_server.user,
        "POSTGRES_PASSWORD": pg_server.password,
        "POSTGRES_DB": pg_server.database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
    }.items():
        monkeypatch.setenv(name, value)


def _options(mode_timeout: float) -> Options:
    return Options(
        sizes=[300],
        modes=["write-only"],
        batch_sizes=[100],
        replicas=[1],
        products=20,
        partitions=3,
        mode_timeout=mode_timeout,
    )


async def _databases(server: PostgresEndpoint) -> set[str]:
    connection = await server.connect()
    try:
        rows = await connection.fetch("SELECT datname FROM pg_database")
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


@pytest.mark.usefixtures("bench_env")
async def test_a_run_writes_to_its_own_database_and_drops_it_once_it_succeeded(
    pg_server: PostgresEndpoint,
) -> None:
    outcome = await run(_options(mode_timeout=120))

    assert not outcome.failed, outcome.header
    assert any(f"/{OWN} run on this host" in line for line in outcome.header), outcome.header
    (result,) = outcome.results
    assert (result.mode, result.events) == ("write-only", 300)
    assert any(note.startswith("verified: table matches the oracle") for note in result.notes)
    assert OWN not in await _databases(pg_server)


@pytest.mark.usefixtures("bench_env")
async def test_a_failed_run_keeps_its_database_to_be_read(pg_server: PostgresEndpoint) -> None:
    try:
        # No mode finishes in a millisecond: write-only gives up reading its stream.
        outcome = await run(_options(mode_timeout=0.001))

        assert outcome.failed
        assert any("write-only" in line and "FAILED" in line for line in outcome.header)
        assert f"tables kept for reading in database {OWN} (drop it when done)" in outcome.header
        assert OWN in await _databases(pg_server)
    finally:
        connection = await pg_server.connect()
        try:
            await drop_database(connection, OWN)
        finally:
            await connection.close()
