"""The service's engine: what every connection it opens is set to, and how long it lives."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.postgres.engine import connected


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
