"""Alembic on real PostgreSQL: round trips, no drift, offline SQL, seed data survives."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from service.postgres.schema_gate import head_revision
from tests.conftest import ROOT, TEST_DATABASE, _recreate_database, alembic
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
        "args = argparse.Namespace(revision='head', downgrade=False)\n"
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
