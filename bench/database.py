"""The bench database: create it, migrate it, empty it, and read what the sinks wrote."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

import asyncpg

from bench import ROOT
from bench.cpu import read_proc
from bench.target import Target
from testbed.run_database import drop_database

TABLES = "products, processed_events, consumer_offsets"


async def ensure_database(target: Target, name: str | None = None) -> None:
    """Create the bench database (or `name`) if it is missing (the role has CREATEDB)."""
    name = name or target.base.postgres_db
    connection = await asyncpg.connect(target.dsn(target.admin_database), timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
            print(f"bench: created database {name}", file=sys.stderr)
    finally:
        await connection.close()


def peer_database(target: Target, peer: str) -> str:
    """The database a peer (quix, connect) writes to: beside the service's, named after it."""
    return f"{target.base.postgres_db}_{peer}"


async def drop_run_databases(target: Target, peers: Iterable[str]) -> None:
    """Drop the run's own database and those its peers wrote to (if they ran)."""
    names = [target.base.postgres_db, *(peer_database(target, peer) for peer in peers)]
    connection = await asyncpg.connect(target.dsn(target.admin_database), timeout=10)
    try:
        made = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", names
        )
        for name in sorted(row["datname"] for row in made):
            await drop_database(connection, name)
            print(f"bench: dropped database {name}", file=sys.stderr)
    finally:
        await connection.close()


def migrate(target: Target) -> None:
    """`alembic upgrade head` on the bench database, as an operator would run it."""
    env = target.env(target.base)
    # The bench database belongs to POSTGRES_USER (it created it): migrate as that role.
    env.update(POSTGRES_MIGRATION_USER="", POSTGRES_MIGRATION_PASSWORD="")
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"alembic upgrade head failed:\n{result.stdout}\n{result.stderr}")


async def truncate(target: Target) -> None:
    connection = await asyncpg.connect(target.dsn(), timeout=10)
    try:
        await connection.execute(f"TRUNCATE {TABLES}")
    finally:
        await connection.close()


class Positions:
    """Reads the service's stored positions (consumer_offsets) for one group and topic."""

    def __init__(self, connection: asyncpg.Connection, group_id: str, topic: str) -> None:
        self.connection = connection
        self.group_id = group_id
        self.topic = topic

    async def read(self) -> tuple[int, int]:
        """(partitions with a stored position, sum of their next offsets)."""
        row = await self.connection.fetchrow(
            "SELECT count(*), coalesce(sum(next_offset), 0) FROM consumer_offsets "
            "WHERE group_id = $1 AND topic = $2",
            self.group_id,
            self.topic,
        )
        assert row is not None
        return int(row[0]), int(row[1])


async def table_counts(target: Target) -> dict[str, int]:
    connection = await asyncpg.connect(target.dsn(), timeout=10)
    try:
        return {
            "products": int(await connection.fetchval("SELECT count(*) FROM products")),
            "processed_events": int(
                await connection.fetchval("SELECT count(*) FROM processed_events")
            ),
        }
    finally:
        await connection.close()


async def postmaster_pid(connection: asyncpg.Connection) -> int | None:
    """The pid of the PostgreSQL server this connection is served by (its backend's parent),
    when it runs on this host; None otherwise."""
    backend = read_proc(int(await connection.fetchval("SELECT pg_backend_pid()")))
    server = read_proc(backend.ppid) if backend and "postgres" in backend.title else None
    return server.pid if server and "postgres" in server.title else None
