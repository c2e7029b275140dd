"""Alembic environment (async template): the URL comes from the service's own settings."""

import asyncio
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from service.config import ConfigurationError, load_settings
from service.models import Base
from service.postgres_tls import connect_args as postgres_connect_args

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def database_url() -> str:
    """The URL set by the caller (tests), else the one the settings build."""
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    try:
        return load_settings().database_url
    except ConfigurationError as error:
        sys.exit(str(error))


def connect_args() -> dict[str, object]:
    """TLS as the service connects (POSTGRES_SSLMODE...; issue 8, item 4), unless the caller
    set the URL (tests), which then may set `connect_args` too."""
    if config.attributes.get("database_url"):
        return dict(config.attributes.get("connect_args", {}))
    try:
        return postgres_connect_args(load_settings())
    except ConfigurationError as error:
        sys.exit(str(error))


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
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
    )

    with context.begin_transaction():
        context.run_migrations()


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
