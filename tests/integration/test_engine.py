"""The service's engine: what every connection it opens is set to, and how long it lives."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.postgres.engine import connected, make_engine


async def test_every_statement_is_planned_for_its_own_parameters(settings: Settings) -> None:
    """No generic plan made while the tables were small may outlive their growth (db.py)."""
    async with connected(settings) as engine, engine.connect() as connection:
        mode = await connection.scalar(text("SHOW plan_cache_mode"))
        name = await connection.scalar(text("SHOW application_name"))

    assert (mode, name) == ("force_custom_plan", "inventory-sink")


async def _gone(engine: AsyncEngine, backend: int) -> bool:
    """Whether the server has no session `backend` any more (within a few seconds)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        async with engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend}
            )
        if not found:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_commands_engine_closes_its_connections_on_leaving_even_after_an_error(
    settings: Settings, engine: AsyncEngine
) -> None:
    with pytest.raises(RuntimeError, match="the command failed"):
        async with connected(settings) as used:
            async with used.connect() as connection:
                backend = await connection.scalar(text("SELECT pg_backend_pid()"))
            raise RuntimeError("the command failed")
    assert await _gone(engine, backend)


async def test_a_transaction_left_waiting_past_the_idle_limit_is_ended_and_its_locks_freed(
    settings: Settings, engine: AsyncEngine
) -> None:
    """The consumer's engine gives up a transaction its client has left waiting (a process
    frozen mid-batch): its locked positions are free again for the partitions' new owner."""
    frozen = make_engine(settings, idle_in_transaction_ms=1000)
    try:
        async with frozen.connect() as connection:
            assert await connection.scalar(text("SHOW idle_in_transaction_session_timeout")) == "1s"
            await connection.execute(
                text("SELECT * FROM consumer_offsets FOR UPDATE")  # what the write path locks
            )
            await asyncio.sleep(2.0)  # the client is silent: PostgreSQL ends the session
            with pytest.raises(DBAPIError):
                await connection.execute(text("SELECT 1"))
        async with engine.connect() as other:
            waiting = await other.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'consumer_offsets'::regclass"
                    " AND pid <> pg_backend_pid()"
                )
            )
        assert waiting == 0
    finally:
        await frozen.dispose()
