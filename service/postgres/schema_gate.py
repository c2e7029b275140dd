"""Refuse to consume into a database whose schema this release cannot work with.

The database may be at this release's head, or at a newer revision whose migrations recorded
that code at this release's head stays compatible (expand/contract, MIGRATIONS.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
from importlib import resources
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.local_stack import local_stack_hint
from service.config.settings import PostgresSettings
from service.core.schema_compat import Verdict, judge
from service.postgres.schema_marker import read_schema_state

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("service.schema")


class SchemaNotReady(RuntimeError):
    pass


def alembic_config() -> Config:
    """The migrations this release ships in its package (service/postgres/migrations, found with
    importlib.resources, so an installed package migrates from any working directory), with
    the checkout's alembic.ini where there is one (logging, file names of new revisions).
    ALEMBIC_CONFIG names another alembic.ini, with its migrations/ next to it, as for the
    alembic CLI."""
    chosen = os.environ.get("ALEMBIC_CONFIG")
    if chosen:
        config = Config(chosen)
        config.set_main_option("script_location", str(Path(chosen).parent / "migrations"))
        return config
    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(packaged_migrations()))
    return config


def packaged_migrations() -> Path:
    """service/postgres/migrations of the imported package (a directory: the package is never
    zipped)."""
    return Path(str(resources.files("service.postgres") / "migrations"))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def code_lineage() -> list[str]:
    """This release's revisions, oldest first; its head is last."""
    script = ScriptDirectory.from_config(alembic_config())
    return [item.revision for item in script.walk_revisions()][::-1]


async def schema_verdict(engine: AsyncEngine) -> Verdict:
    """Whether this release may run on the database behind `engine`, and why."""
    try:
        async with engine.connect() as connection:
            revisions, marker = await read_schema_state(connection)
    except OSError as error:
        raise SchemaNotReady(
            f"cannot reach PostgreSQL ({error}); check POSTGRES_HOST/POSTGRES_PORT and that the "
            f"server runs{local_stack_hint()}"
        ) from error
    return judge(code_lineage(), revisions, marker)


async def require_current_schema(engine: AsyncEngine) -> None:
    verdict = await schema_verdict(engine)
    if not verdict.ok:
        raise SchemaNotReady(verdict.message)
    log.info("%s", verdict.message)


def check_before_start(settings: PostgresSettings) -> None:
    """The schema check on its own, before the consumer starts: a refusal is then one line
    (SchemaNotReady) instead of an application start-up traceback."""
    from service.postgres.engine import connected

    async def check() -> None:
        async with connected(settings) as engine:
            await require_current_schema(engine)

    asyncio.run(check())
