"""Forget processed event ids once they are older than the retention window.

Deduplication of upstream retries holds within that window (PROCESSED_EVENT_RETENTION_HOURS,
a week by default); the positions in `consumer_offsets` keep redelivered records from being
applied twice whatever their age.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.postgres import processed_events

log = logging.getLogger("service.retention")


async def purge_once(
    sessions: async_sessionmaker[AsyncSession], retention_s: float, chunk: int = 10_000
) -> int:
    """Delete expired ids in chunks (short transactions); return how many went."""
    total = 0
    while True:
        async with sessions() as session, session.begin():
            deleted = await processed_events.purge_processed(session, retention_s, chunk)
        total += deleted
        if deleted < chunk:
            return total


async def purge_forever(
    sessions: async_sessionmaker[AsyncSession], retention_s: float, interval_s: float
) -> None:
    while True:
        try:
            deleted = await purge_once(sessions, retention_s)
            if deleted:
                log.info("forgot %d processed event ids older than %.0fs", deleted, retention_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("processed-event cleanup failed (%s); will try again", error)
        await asyncio.sleep(interval_s)
