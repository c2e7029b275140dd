"""Engine and session factory for the async PostgreSQL connection."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.config import Settings
from service.postgres_tls import connect_args


def make_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.postgres_pool_size,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {"application_name": "inventory-sink"},
            **connect_args(settings),  # TLS: POSTGRES_SSLMODE and friends
        },
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
