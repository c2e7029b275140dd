"""The service's engine: what every connection it opens is set to."""

from __future__ import annotations

from sqlalchemy import text

from service.config.settings import Settings
from service.postgres.engine import make_engine


async def test_every_statement_is_planned_for_its_own_parameters(settings: Settings) -> None:
    """No generic plan made while the tables were small may outlive their growth (db.py)."""
    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            mode = await connection.scalar(text("SHOW plan_cache_mode"))
            name = await connection.scalar(text("SHOW application_name"))
    finally:
        await engine.dispose()

    assert (mode, name) == ("force_custom_plan", "inventory-sink")
