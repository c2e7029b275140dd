"""Refuse to consume into a database whose schema is not at the migrations' head."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent


class SchemaNotReady(RuntimeError):
    pass


def alembic_config() -> Config:
    """alembic.ini of this checkout or image (the directory above the package)."""
    ini = ROOT / "alembic.ini"
    if not ini.exists():
        ini = Path.cwd() / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "migrations"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def require_current_schema(engine: AsyncEngine) -> None:
    head = head_revision()
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(text("SELECT to_regclass('alembic_version')"))
            current = (
                await connection.scalar(text("SELECT version_num FROM alembic_version"))
                if exists
                else None
            )
    except OSError as error:
        raise SchemaNotReady(
            f"cannot reach PostgreSQL ({error}); check POSTGRES_HOST/POSTGRES_PORT and that the "
            "server runs (scripts/local-stack up)"
        ) from error
    if current != head:
        raise SchemaNotReady(
            f"database schema is at revision {current or 'none'}, the service needs {head}; "
            "run `python -m service migrate` (alembic upgrade head) first"
        )
