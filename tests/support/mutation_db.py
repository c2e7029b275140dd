"""Databases for mutation testing (scripts/mutation).

mutmut forks one short pytest session per mutant, two at a time. Migrating a database per
session would cost more than the tests, and two sessions must not share one: with
TEST_POSTGRES_CLONE=1 each session gets `<TEST_POSTGRES_DB>_mutation_<pid>`, a copy (CREATE
DATABASE ... TEMPLATE) of `<TEST_POSTGRES_DB>_mutation`, which is migrated once, the first time
a session needs it. `python -m tests.support.mutation_db drop` removes the template and every
copy (scripts/mutation runs it before and after, so a run starts from the current migrations
and a killed mutant leaves nothing behind).

In the same mode a test fails after MUTATION_TEST_TIMEOUT seconds (default 30): a mutant that
makes a batch fail in a way the write path retries forever is then caught in seconds, not at
mutmut's wall-clock limit (minutes, scaled to the duration of all the tests it runs).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from tests.support.services import PostgresEndpoint, postgres_endpoint

ENABLED = os.environ.get("TEST_POSTGRES_CLONE") == "1"
TEST_TIMEOUT_S = int(os.environ.get("MUTATION_TEST_TIMEOUT", "30"))
_LOCK = 0x6D757461  # pg_advisory_lock key: one session at a time builds or copies the template


def template_name(base: str) -> str:
    return f"{base}_mutation"


def clone_name(base: str) -> str:
    return f"{template_name(base)}_{os.getpid()}"


class MutantHang(BaseException):
    """Not an Exception, so no `except Exception` of the code under test (the write path's
    retry loop) swallows it; asyncio lets it out of the event loop."""


@contextmanager
def time_limit(what: str) -> Iterator[None]:
    """Interrupt the block (in the main thread, where the test's event loop runs) once it
    takes over TEST_TIMEOUT_S seconds, and again every second if something catches it."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise MutantHang(
            f"{what} ran over {TEST_TIMEOUT_S}s (MUTATION_TEST_TIMEOUT): the mutant never "
            "lets it finish"
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT_S, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


async def clone(
    server: PostgresEndpoint, base: str, migrate: Callable[[PostgresEndpoint], None]
) -> PostgresEndpoint:
    """A fresh copy of the migrated template (built first if missing), named for this process."""
    template, name = template_name(base), clone_name(base)
    connection = await server.connect()
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK)
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template)
        if not exists:
            # Built under another name and renamed when migrated: a session killed midway
            # leaves no half-migrated template behind.
            building = f"{template}_building"
            await connection.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{building}"')
            await asyncio.to_thread(
                migrate,
                PostgresEndpoint(server.host, server.port, server.user, server.password, building),
            )
            await connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await connection.close()  # also releases the advisory lock
    return PostgresEndpoint(server.host, server.port, server.user, server.password, name)


async def drop(server: PostgresEndpoint, name: str) -> None:
    connection = await server.connect()
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def drop_all(server: PostgresEndpoint, base: str) -> list[str]:
    """Drop the template and every copy of it; returns their names."""
    connection = await server.connect()
    try:
        prefix = template_name(base)
        names = [
            row[0]
            for row in await connection.fetch("SELECT datname FROM pg_database ORDER BY datname")
            if row[0] == prefix or row[0].startswith(prefix + "_")
        ]
        for name in names:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
    return names


def main(argv: list[str]) -> int:
    if argv != ["drop"]:
        print("usage: python -m tests.support.mutation_db drop", file=sys.stderr)
        return 2
    base = os.environ.get("TEST_POSTGRES_DB", "inventory_test")
    with postgres_endpoint() as server:
        dropped = asyncio.run(drop_all(server, base))
    if dropped:
        print(f"dropped {len(dropped)} mutation-testing database(s) of {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
