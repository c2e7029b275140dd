"""Engine and session factory for the async PostgreSQL connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
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
    client longer than this, rolling it back and releasing its locks (default: twice
    POSTGRES_TIMEOUT_S)."""
    idle_ms = (
        int(2000 * settings.postgres_timeout_s)
        if idle_in_transaction_ms is None
        else idle_in_transaction_ms
    )
    engine = create_async_engine(
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
                # A session whose client vanished behind a partition or a proxy keeps its
                # transaction, and the row locks on the stored positions, until the server hears
                # of it: from a proxy never (it answers TCP keepalives for the lost client).
                # The service's next transaction then waits on those locks for ever. Ended after
                # twice POSTGRES_TIMEOUT_S idle, the dead session's locks are released; a live
                # one is never that idle inside a transaction (each statement answers within
                # POSTGRES_TIMEOUT_S, or the connection is dropped).
                "idle_in_transaction_session_timeout": str(idle_ms),
            },
            # Without these, a connection that stops answering (black-holed by a partition,
            # half-open) hangs the write path for ever: asyncpg waits without limit for the
            # reply of a statement already sent. Timed out, the connection is dropped, the
            # batch retried on a new one.
            "command_timeout": settings.postgres_timeout_s,
            "timeout": settings.postgres_timeout_s,
            **connect_args(settings),  # TLS: POSTGRES_SSLMODE and friends
        },
    )
    _timeouts_drop_the_connection(engine)
    return engine


def _timeouts_drop_the_connection(engine: AsyncEngine) -> None:
    """A statement timed out by POSTGRES_TIMEOUT_S leaves its connection waiting for a cancel
    request that, through a dead network path, never completes; put back in the pool, it times
    out every statement after it, for ever (seen after a partition healed). Treated as a
    disconnect, the connection is closed and replaced."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _timeout_is_a_disconnect(context: ExceptionContext) -> None:
        if isinstance(context.original_exception, TimeoutError):
            context.is_disconnect = True


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
