"""Engine and session factory for the async PostgreSQL connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.config.settings import PostgresSettings
from service.postgres.tls import connect_args


def make_engine(
    settings: PostgresSettings, idle_in_transaction_ms: int | None = None
) -> AsyncEngine:
    """`idle_in_transaction_ms`: PostgreSQL ends a session whose transaction waits for its
    client longer than this, rolling it back and releasing its locks (None: never)."""
    idle = (
        {}
        if idle_in_transaction_ms is None
        else {"idle_in_transaction_session_timeout": str(idle_in_transaction_ms)}
    )
    return create_async_engine(
        settings.database_url,
        pool_size=settings.postgres_pool_size,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {
                "application_name": "inventory-sink",
                # asyncpg prepares each statement once per connection; after five runs
                # PostgreSQL may keep a generic plan made for the table as it was then. A sink
                # started on an empty table (a new deployment, a trickle of events) kept a
                # sequential scan for `products WHERE id = ANY(...)` while the table grew: at
                # 5,000 events/s each batch's read took longer than the last and the lag grew
                # to seconds (bench steady mode: p99 7.1 s; with this setting 188 ms). Planning
                # each run for its own array costs well under a millisecond per statement.
                "plan_cache_mode": "force_custom_plan",
                **idle,
            },
            **connect_args(settings),  # TLS: POSTGRES_SSLMODE and friends
        },
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def connected(settings: PostgresSettings) -> AsyncIterator[AsyncEngine]:
    """An engine for one command or check, disposed (its connections closed) on leaving."""
    engine = make_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()
