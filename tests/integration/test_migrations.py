"""Alembic on real PostgreSQL: round trips, no drift, offline SQL, seed data survives."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from service.cli.exit_codes import ExitCode
from service.postgres.schema_gate import head_revision
from tests.conftest import ROOT, TEST_DATABASE, _recreate_database, alembic
from tests.support.cli import run_service, service_env
from tests.support.services import PostgresEndpoint

SCRATCH = f"{TEST_DATABASE}_scratch"  # per session (TEST_POSTGRES_DB)
SEED = "83a471748539"


@pytest.fixture
def scratch(pg_server: PostgresEndpoint) -> PostgresEndpoint:
    asyncio.run(_recreate_database(pg_server, SCRATCH))
    return PostgresEndpoint(
        pg_server.host, pg_server.port, pg_server.user, pg_server.password, SCRATCH
    )


async def _tables(pg: PostgresEndpoint) -> set[str]:
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await connection.close()


def _ok(result: object) -> None:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"  # type: ignore[attr-defined]


async def test_upgrade_downgrade_upgrade_round_trip(scratch: PostgresEndpoint) -> None:
    _ok(alembic(scratch, "upgrade", "head"))
    assert {"products", "consumer_offsets", "processed_events"} <= await _tables(scratch)

    _ok(alembic(scratch, "downgrade", "base"))
    assert await _tables(scratch) == {"alembic_version"}

    _ok(alembic(scratch, "upgrade", "head"))
    assert {"products", "consumer_offsets", "processed_events"} <= await _tables(scratch)


def test_models_and_migrations_do_not_drift(scratch: PostgresEndpoint) -> None:
    _ok(alembic(scratch, "upgrade", "head"))
    result = alembic(scratch, "check")
    _ok(result)
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_offline_mode_emits_sql(scratch: PostgresEndpoint) -> None:
    result = alembic(scratch, "upgrade", "head", "--sql")
    _ok(result)
    assert "CREATE TABLE products" in result.stdout
    assert "CREATE TABLE consumer_offsets" in result.stdout
    assert "ck_products_quantity_non_negative" in result.stdout


async def test_hardening_keeps_seed_rows(scratch: PostgresEndpoint) -> None:
    _ok(alembic(scratch, "upgrade", SEED))
    connection = await asyncpg.connect(scratch.url(driver="postgresql"))
    try:
        await connection.execute(
            "INSERT INTO products (name, description, price, quantity) VALUES "
            "('kept', 'd', 12.345, 7), (NULL, NULL, NULL, NULL), ('neg', NULL, -3, -1)"
        )
        _ok(alembic(scratch, "upgrade", "head"))
        rows = await connection.fetch(
            "SELECT id, name, price::text, quantity, version FROM products ORDER BY id"
        )
    finally:
        await connection.close()
    assert [tuple(r) for r in rows] == [
        (1, "kept", "12.35", 7, 0),
        (2, "unnamed product 2", "0.00", 0, 0),
        (3, "neg", "0.00", 0, 0),
    ]


async def test_migrate_uses_the_settings_it_is_given(scratch: PostgresEndpoint) -> None:
    """`cli._migrate(args, settings)` migrates the database of `settings`, not the one the
    environment names (here: a database that does not exist)."""
    program = (
        "import argparse\n"
        "from service.cli.main import _migrate\n"
        "from service.config.settings import Settings\n"
        f"settings = Settings(postgres_host={scratch.host!r}, postgres_port={scratch.port},\n"
        f"    postgres_user={scratch.user!r}, postgres_password={scratch.password!r},\n"
        f"    postgres_db={scratch.database!r}, postgres_migration_user='',\n"
        "    kafka_bootstrap_servers='127.0.0.1:9092')\n"
        "args = argparse.Namespace(revision='head', downgrade=False, yes=False, dry_run=False)\n"
        "raise SystemExit(_migrate(args, settings))\n"
    )
    env = dict(os.environ, POSTGRES_DB="no_such_database_anywhere", POSTGRES_USER="nobody")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    _ok(result)
    connection = await asyncpg.connect(scratch.url(driver="postgresql"))
    try:
        version = await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    assert version == head_revision()


async def _products_options(pg: PostgresEndpoint) -> list[str] | None:
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        options: list[str] | None = await connection.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = 'products'::regclass"
        )
        return options
    finally:
        await connection.close()


async def test_products_leave_room_on_each_page_for_hot_updates(scratch: PostgresEndpoint) -> None:
    """3c5f0a9d2b71 sets fillfactor 80 on products (each applied event rewrites a row; with
    room on its page the new version is a HOT update); its downgrade resets it."""
    _ok(alembic(scratch, "upgrade", "3c5f0a9d2b71"))
    assert await _products_options(scratch) == ["fillfactor=80"]
    _ok(alembic(scratch, "downgrade", "-1"))
    assert await _products_options(scratch) is None


def migrate(pg: PostgresEndpoint, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m service migrate ARGS` as the owner of `pg`, with no Kafka setting at all:
    migrations never contact Kafka."""
    env = service_env(pg)
    for name in [name for name in env if name.startswith("KAFKA_")]:
        del env[name]
    return run_service(env, "migrate", *args)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1], output
    return errors[0]


async def _state(pg: PostgresEndpoint) -> tuple[str, tuple[int, ...]]:
    """The revision, and the row versions (xmin) of alembic_version and the marker: a rewrite
    of either changes them."""
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        version = await connection.fetchval("SELECT version_num FROM alembic_version")
        rows = await connection.fetch(
            "SELECT xmin::text::bigint AS x FROM alembic_version "
            "UNION ALL SELECT xmin::text::bigint FROM schema_compatibility"
        )
        return version, tuple(row["x"] for row in rows)
    finally:
        await connection.close()


async def _set_read_only(pg: PostgresEndpoint, on: bool) -> None:
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        await connection.execute("SET default_transaction_read_only = off")  # this session's
        value = "on" if on else "off"
        await connection.execute(
            f'ALTER DATABASE "{pg.database}" SET default_transaction_read_only = {value}'
        )
    finally:
        await connection.close()


async def test_a_migrate_with_nothing_to_do_writes_nothing(scratch: PostgresEndpoint) -> None:
    _ok(migrate(scratch))
    before = await _state(scratch)
    again = migrate(scratch)
    _ok(again)
    assert await _state(scratch) == before


async def test_migrate_against_a_read_only_server_ends_in_one_error_line(
    scratch: PostgresEndpoint,
) -> None:
    _ok(alembic(scratch, "upgrade", SEED))
    await _set_read_only(scratch, True)
    try:
        result = migrate(scratch)
    finally:
        await _set_read_only(scratch, False)
    assert result.returncode == ExitCode.UNAVAILABLE, result.stdout + result.stderr
    line = one_error_line(result)
    assert line.startswith("error: PostgreSQL at POSTGRES_HOST takes no writes now ("), line
    assert "read-only" in line and "point POSTGRES_HOST at the primary" in line, line
    assert (await _state_revision(scratch)) == SEED  # nothing changed


async def test_migrate_with_nothing_to_do_succeeds_on_a_read_only_server(
    scratch: PostgresEndpoint,
) -> None:
    _ok(migrate(scratch))
    before = await _state(scratch)
    await _set_read_only(scratch, True)
    try:
        result = migrate(scratch)
    finally:
        await _set_read_only(scratch, False)
    _ok(result)
    assert await _state(scratch) == before


async def _state_revision(pg: PostgresEndpoint) -> str:
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        revision: str = await connection.fetchval("SELECT version_num FROM alembic_version")
        return revision
    finally:
        await connection.close()


async def test_a_downgrade_names_the_data_it_drops_and_drops_it_only_with_yes(
    scratch: PostgresEndpoint,
) -> None:
    _ok(migrate(scratch))
    target = "7ef928cf46c7"
    expected_steps = [
        "82a68c906ffc -> 3c5f0a9d2b71 (",
        "3c5f0a9d2b71 -> ee176b383ef9 (",
        "ee176b383ef9 -> 7ad30d479838 (",
        "7ad30d479838 -> 7ef928cf46c7 (",
    ]

    dry = migrate(scratch, "--downgrade", target, "--dry-run")
    _ok(dry)
    lines = dry.stdout.strip().splitlines()
    assert [line[: len(start)] for line, start in zip(lines, expected_steps, strict=False)] == (
        expected_steps
    )
    assert lines[0].endswith("drops no data"), lines
    assert lines[2].endswith(
        "drops consumer_offsets.topic_id (a topic deleted and created again is then not recognised)"
    ), lines
    assert "drops the schema_compatibility table" in lines[3], lines
    assert lines[-1] == "dry run: nothing changed"
    assert await _state_revision(scratch) == head_revision()

    refused = migrate(scratch, "--downgrade", target)
    assert refused.returncode == ExitCode.REFUSED, refused.stdout + refused.stderr
    assert refused.stdout.strip().splitlines() == lines[:-1]
    assert one_error_line(refused) == (
        f"error: going down to {target} drops the data listed above; nothing changed; run it "
        "again with --yes to drop it (back it up first), or --dry-run to list only"
    )
    assert await _state_revision(scratch) == head_revision()

    done = migrate(scratch, "--downgrade", target, "--yes")
    _ok(done)
    assert "downgrade ee176b383ef9 -> 7ad30d479838" in done.stderr  # named before it ran
    assert await _state_revision(scratch) == target


def test_a_downgrade_that_drops_no_data_needs_no_yes(scratch: PostgresEndpoint) -> None:
    _ok(migrate(scratch))
    _ok(migrate(scratch, "--downgrade", "3c5f0a9d2b71"))


def test_every_revision_says_what_its_downgrade_drops() -> None:
    from alembic.script import ScriptDirectory

    from service.postgres.schema_gate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    silent = [
        item.revision
        for item in script.walk_revisions()
        if not hasattr(item.module, "downgrade_drops")
    ]
    assert not silent, f"declare downgrade_drops (None: no data) in revisions {silent}"


def test_the_alembic_cli_needs_no_kafka_setting(scratch: PostgresEndpoint) -> None:
    env = {name: value for name, value in service_env(scratch).items() if "KAFKA" not in name}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _ok(result)
    assert "KAFKA" not in result.stderr
