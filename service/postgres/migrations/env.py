"""Alembic environment (async template): the URL comes from the service's own settings."""

import asyncio
import logging
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from service.config.settings import (
    ConfigurationError,
    DatabaseSettings,
    PostgresSettings,
    load_settings,
)
from service.core.schema_compat import IncompatibleDeclaration
from service.postgres.downgrade_plan import DowngradePlanned, downgrade_steps
from service.postgres.grants import (
    ConsumerGrants,
    InvalidDeclaration,
    RoleMissing,
    consumer_grants,
    declared_privileges,
    describe,
    grant_consumer_role,
    holds_exactly,
)
from service.postgres.migration_lock import migration_lock
from service.postgres.models import Base
from service.postgres.schema_marker import marker_is_current, record_compatibility
from service.postgres.tls import connect_args as postgres_connect_args

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata
log = logging.getLogger("alembic.env")


def settings() -> PostgresSettings:
    """The settings `python -m service migrate` hands over, else the environment's (only the
    database's: migrations never contact Kafka)."""
    given = config.attributes.get("settings")
    if isinstance(given, PostgresSettings):
        return given
    try:
        return load_settings(DatabaseSettings)
    except ConfigurationError as error:
        sys.exit(str(error))


def database_url() -> str:
    """Migrations log in as the schema owner (POSTGRES_MIGRATION_USER, else POSTGRES_USER)."""
    return settings().migration_database_url


def connect_args() -> dict[str, object]:
    """TLS as the service connects (POSTGRES_SSLMODE, POSTGRES_SSLROOTCERT...)."""
    return postgres_connect_args(settings())


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        compare_server_default=True,
    )

    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    # Replicas may all run `migrate` at once: one at a time, the others wait, then find head.
    with migration_lock(connection, on_wait=waiting):
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            compare_server_default=True,
        )

        before = context.get_context().get_current_heads()
        if is_downgrade():
            announce_downgrade(before)
        with context.begin_transaction():
            context.run_migrations()
            if changes_revision():
                moved = context.get_context().get_current_heads() != before
                after_migrations(connection, migrated=moved)


def is_downgrade() -> bool:
    """`alembic downgrade` and `migrate --downgrade` (alembic's command names the function
    it hands the environment after itself)."""
    step = context.get_context().opts.get("fn")
    return getattr(step, "__name__", "") == "downgrade"


def announce_downgrade(heads: tuple[str, ...]) -> None:
    """Name the data each step deletes before any runs. `migrate` may ask for the plan only
    (dry_run), or that data is deleted only when allowed (allow_dropping_data)."""
    destination = context.get_context().opts["destination_rev"]
    steps = downgrade_steps(context.script, heads, destination)
    dry_run = bool(config.attributes.get("dry_run"))
    allowed = config.attributes.get("allow_dropping_data", True)
    planned = DowngradePlanned(steps, dry_run=dry_run)
    if dry_run or (planned.drops_data and not allowed):
        raise planned
    for step in steps:
        if step.drops or not step.declared:
            log.warning("downgrade %s", step.describe())
        else:
            log.info("downgrade %s", step.describe())


def waiting(holder: int | None) -> None:
    log.info("another migration holds the migration lock (pid %s); waiting for it", holder)


def changes_revision() -> bool:
    """upgrade, downgrade and stamp; not check, current or revision --autogenerate."""
    return "destination_rev" in context.get_context().opts


def after_migrations(connection: Connection, *, migrated: bool) -> None:
    """In the migration's transaction: record which code may run on the schema now, and
    leave the consumer's role exactly the privileges its statements need.

    With nothing migrated (not `migrated`), first read whether the marker and the role
    are already exactly that, and write nothing if so: a read-only server or a standby at
    head passes, and a new POSTGRES_USER or a grant changed by hand is still set right."""
    heads = context.get_context().get_current_heads()
    current = settings()
    try:
        grants = None
        if current.migration_user != current.postgres_user:
            declared = declared_privileges(context.script, heads)
            grants = consumer_grants(connection, current.postgres_user, declared)
        if not migrated and _already_set(connection, heads, grants):
            log.info("the marker and the consumer's grants are as set; nothing to write")
            return
        marker = record_compatibility(connection, context.script, heads)
        if marker is not None:
            log.info(
                "schema at %s accepts code from revision %s on",
                marker.revision,
                marker.min_code_revision,
            )
        if grants is not None:
            granted = grant_consumer_role(connection, grants)
            log.info(
                "granted %s exactly: %s (no DDL, no TEMPORARY)",
                grants.role,
                describe(granted) or "nothing",
            )
    except (IncompatibleDeclaration, RoleMissing, InvalidDeclaration) as error:
        sys.exit(f"migration refused, nothing changed: {error}")


def _already_set(
    connection: Connection, heads: tuple[str, ...], grants: ConsumerGrants | None
) -> bool:
    return marker_is_current(connection, context.script, heads) and (
        grants is None or holds_exactly(connection, grants)
    )


async def run_async_migrations() -> None:
    section = config.get_section(config.config_ini_section, {})
    section["sqlalchemy.url"] = database_url()
    connectable = async_engine_from_config(
        section,
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
        connect_args=connect_args(),
    )

    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)

    await connectable.dispose()


def run_migrations_online() -> None:
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
