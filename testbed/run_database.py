"""A database of one run's own on the shared PostgreSQL, for the fault suite at full size and
the benchmark: two runs at once never share tables (one recreating or emptying a shared
database pulled the rows from under the other's service), and the run that made it drops it
once it succeeded (a failed run's tables stay, to be read)."""

from __future__ import annotations

import os

import asyncpg


def run_database(prefix: str) -> str:
    """`prefix`_<this process's id>: unique among the runs going on at once."""
    return f"{prefix}_{os.getpid()}"


async def drop_database(connection: asyncpg.Connection, name: str) -> None:
    """Drop `name` and end its sessions (`connection` is to another database of the server)."""
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
