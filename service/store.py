"""The SQL of the write path: set-based reads and writes for one batch, in one transaction.

Every statement takes arrays (one round trip whatever the batch size) and keeps a constant
text, so asyncpg prepares it once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from operator import itemgetter
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import ProductState
from service.records import TopicAndPartition

_ENSURE_POSITIONS = text(
    """
    INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
    SELECT :group_id, t.topic, t.partition, 0
    FROM unnest(CAST(:topics AS varchar[]), CAST(:partitions AS integer[])) AS t(topic, partition)
    ORDER BY t.topic, t.partition
    ON CONFLICT DO NOTHING
    """
)

_LOCK_POSITIONS = text(
    """
    SELECT c.topic, c.partition, c.next_offset
    FROM consumer_offsets AS c
    JOIN unnest(CAST(:topics AS varchar[]), CAST(:partitions AS integer[])) AS t(topic, partition)
      ON c.topic = t.topic AND c.partition = t.partition
    WHERE c.group_id = :group_id
    ORDER BY c.topic, c.partition
    FOR UPDATE OF c
    """
)

_READ_POSITIONS = text(
    """
    SELECT topic, partition, next_offset FROM consumer_offsets
    WHERE group_id = :group_id AND topic = ANY(CAST(:topics AS varchar[]))
    """
)

_ADVANCE_POSITIONS = text(
    """
    UPDATE consumer_offsets AS c
    SET next_offset = GREATEST(c.next_offset, t.next_offset), updated_at = now()
    FROM unnest(
        CAST(:topics AS varchar[]), CAST(:partitions AS integer[]), CAST(:offsets AS bigint[])
    ) AS t(topic, partition, next_offset)
    WHERE c.group_id = :group_id AND c.topic = t.topic AND c.partition = t.partition
    """
)

# Records the batch's event ids and returns those recorded before (by an earlier batch or a
# concurrent transaction, whose commit the insert waits for): the duplicates. One statement
# and one index probe per id; the result is usually empty.
_CLAIM_EVENTS = text(
    """
    WITH batch AS (SELECT DISTINCT unnest(CAST(:ids AS uuid[])) AS event_id),
    claimed AS (
        INSERT INTO processed_events (event_id)
        SELECT event_id FROM batch
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

_LOAD_PRODUCTS = text(
    """
    SELECT id, name, description, price, quantity, version, deleted_at
    FROM products WHERE id = ANY(CAST(:ids AS bigint[]))
    ORDER BY id
    FOR UPDATE
    """
)

_SAVE_PRODUCTS = text(
    """
    INSERT INTO products (id, name, description, price, quantity, version, deleted_at)
    SELECT * FROM unnest(
        CAST(:ids AS bigint[]), CAST(:names AS varchar[]), CAST(:descriptions AS text[]),
        CAST(:prices AS numeric[]), CAST(:quantities AS integer[]), CAST(:versions AS bigint[]),
        CAST(:deleted_at AS timestamptz[])
    )
    ON CONFLICT (id) DO UPDATE SET
        name = EXCLUDED.name,
        description = EXCLUDED.description,
        price = EXCLUDED.price,
        quantity = EXCLUDED.quantity,
        version = EXCLUDED.version,
        deleted_at = EXCLUDED.deleted_at,
        updated_at = now()
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


def _split(partitions: Iterable[TopicAndPartition]) -> dict[str, list[str] | list[int]]:
    ordered = sorted(partitions)
    return {"topics": [t for t, _ in ordered], "partitions": [p for _, p in ordered]}


async def lock_positions(
    session: AsyncSession, group_id: str, partitions: Collection[TopicAndPartition]
) -> dict[TopicAndPartition, int]:
    """Lock each partition's stored position (creating it at 0) and return the next offsets.

    The row lock serialises every consumer that writes the same partition, so a consumer
    that lost the partition in a rebalance waits, then sees how far the new owner got.
    """
    params = {"group_id": group_id, **_split(partitions)}
    rows = await session.execute(_LOCK_POSITIONS, params)
    found = {(topic, partition): offset for topic, partition, offset in rows}
    if len(found) < len(partitions):  # first batch of a partition: create its row, lock again
        await session.execute(_ENSURE_POSITIONS, params)
        rows = await session.execute(_LOCK_POSITIONS, params)
        found = {(topic, partition): offset for topic, partition, offset in rows}
    return found


async def read_positions(
    session: AsyncSession, group_id: str, topics: Collection[str]
) -> dict[TopicAndPartition, int]:
    rows = await session.execute(_READ_POSITIONS, {"group_id": group_id, "topics": list(topics)})
    return {(topic, partition): offset for topic, partition, offset in rows}


async def advance_positions(
    session: AsyncSession, group_id: str, next_offsets: Mapping[TopicAndPartition, int]
) -> None:
    if not next_offsets:
        return
    ordered = sorted(next_offsets.items())
    await session.execute(
        _ADVANCE_POSITIONS,
        {
            "group_id": group_id,
            "topics": [tp[0] for tp, _ in ordered],
            "partitions": [tp[1] for tp, _ in ordered],
            "offsets": [offset for _, offset in ordered],
        },
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


async def load_products(
    session: AsyncSession, product_ids: Collection[int]
) -> dict[int, ProductState]:
    """Read (and lock, in id order) the current state of the given products."""
    if not product_ids:
        return {}
    rows = await session.execute(_LOAD_PRODUCTS, {"ids": sorted(product_ids)})
    # Each field taken by its column's name, whatever the SELECT's order (one lookup per
    # statement, then plain tuple indexing: as fast as positional construction).
    columns = list(rows.keys())
    pick = itemgetter(*(columns.index(name) for name in ProductState._fields))
    return {state.id: state for state in map(ProductState._make, map(pick, rows))}


async def save_products(session: AsyncSession, products: Collection[ProductState]) -> None:
    """Insert or overwrite the given product states in one statement."""
    if not products:
        return
    ordered = sorted(products, key=lambda p: p.id)
    await session.execute(
        _SAVE_PRODUCTS,
        {
            "ids": [p.id for p in ordered],
            "names": [p.name for p in ordered],
            "descriptions": [p.description for p in ordered],
            "prices": [p.price for p in ordered],
            "quantities": [p.quantity for p in ordered],
            "versions": [p.version for p in ordered],
            "deleted_at": [p.deleted_at for p in ordered],
        },
    )


async def purge_processed(session: AsyncSession, older_than_seconds: float, limit: int) -> int:
    """Forget processed event ids older than the retention window; returns how many."""
    result = await session.execute(
        _PURGE_PROCESSED, {"seconds": older_than_seconds, "limit": limit}
    )
    return int(getattr(result, "rowcount", 0) or 0)
