"""The SQL of processed_events: the ids of applied stock adjustments, claimed and given back
within a batch's transaction (service/core/claims.py), and forgotten after the retention
window (service/postgres/retention.py).

The batch's statements take arrays (one round trip whatever the batch size) and keep a
constant text, so asyncpg prepares each once.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Records the batch's claimed event ids (claims.claimed_ids: its stock adjustments') and
# returns those recorded before (by an earlier batch or a concurrent transaction, whose commit
# the insert waits for): the duplicates. One statement and one index probe per id; the result
# is usually empty. The ids are inserted in key order,
# so the inserts walk the primary key's pages in order (random UUIDs otherwise scatter them)
# and two transactions claiming the same ids wait for each other in one order, never in a
# cycle. Sorted here rather than in Python: 5,000 UUIDs cost the consumer ~10 ms to sort.
_CLAIM_EVENTS = text(
    """
    WITH batch AS (SELECT DISTINCT unnest(CAST(:ids AS uuid[])) AS event_id),
    claimed AS (
        INSERT INTO processed_events (event_id)
        SELECT event_id FROM batch ORDER BY event_id
        ON CONFLICT DO NOTHING
        RETURNING event_id
    )
    SELECT event_id FROM batch EXCEPT ALL SELECT event_id FROM claimed
    """
)

# Gives back claims of this transaction (the ids of events the fold rejected): see claims.py.
_RELEASE_EVENTS = text(
    """
    DELETE FROM processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))
    """
)

_PURGE_PROCESSED = text(
    """
    DELETE FROM processed_events
    WHERE event_id IN (
        SELECT event_id FROM processed_events
        WHERE processed_at < now() - make_interval(secs => :seconds)
        LIMIT :limit
    )
    """
)


async def claim_events(session: AsyncSession, event_ids: Sequence[UUID]) -> set[UUID]:
    """Record `event_ids` as processed; return the ones that already were (duplicates).

    The claims of events the fold then rejects are given back with `release_events`."""
    if not event_ids:
        return set()
    rows = await session.execute(_CLAIM_EVENTS, {"ids": event_ids})
    return {row[0] for row in rows}


async def release_events(session: AsyncSession, event_ids: Sequence[UUID]) -> None:
    """Forget the claims of `event_ids` (made earlier in this transaction)."""
    if event_ids:
        await session.execute(_RELEASE_EVENTS, {"ids": event_ids})


async def purge_processed(session: AsyncSession, older_than_seconds: float, limit: int) -> int:
    """Forget processed event ids older than the retention window; returns how many."""
    result = await session.execute(
        _PURGE_PROCESSED, {"seconds": older_than_seconds, "limit": limit}
    )
    return int(getattr(result, "rowcount", 0) or 0)
