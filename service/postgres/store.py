"""The SQL of the write path: set-based reads and writes for one batch, in one transaction.

Every statement takes arrays (one round trip whatever the batch size) and keeps a constant
text, so asyncpg prepares it once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from operator import itemgetter
from uuid import UUID

import pydantic_core
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.domain import ProductState
from service.core.failures import Conflict, UnstorableRow
from service.core.records import TopicAndPartition

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

# No row locks: the partition's row in consumer_offsets already serialises the writers of a
# product (its events share a key, so a partition). `xmin` (the id of the transaction that wrote
# the row version read) lets the writes below check that nobody changed the row since.
_LOAD_PRODUCTS = text(
    """
    SELECT id, name, description, price, quantity, version, deleted_at, xmin
    FROM products WHERE id = ANY(CAST(:ids AS bigint[]))
    """
)

# The rows to write travel as one JSON parameter, serialised by pydantic-core (Rust) and read
# by PostgreSQL's json_to_recordset. Seven typed arrays cost the consumer twice the CPU: asyncpg
# encodes every element in Python-facing code (a Decimal, a datetime, an ABC check each).
# Measured with bench/README.md's profile: 13% of the consumer's CPU went to these two
# statements' parameters before.

# Products the batch read: overwritten only if still the version read (compare-and-set on
# xmin). Under READ COMMITTED an UPDATE that meets a row changed by a transaction committed
# meanwhile re-checks its condition on the newest version: a changed row is left out, and the
# row count shows it.
_UPDATE_PRODUCTS = text(
    """
    UPDATE products AS p SET
        name = t.name,
        description = t.description,
        price = t.price,
        quantity = t.quantity,
        version = t.version,
        deleted_at = t.deleted_at,
        updated_at = now()
    FROM json_to_recordset(CAST(:rows AS json)) AS t(
        id bigint, name varchar, description text, price numeric, quantity integer,
        version bigint, deleted_at timestamptz, read_xmin xid
    )
    WHERE p.id = t.id AND p.xmin = t.read_xmin
    """
)

# Products the batch found absent: inserted only where still absent (a concurrent transaction
# may have inserted one meanwhile; the insert waits for it and then leaves the row out).
_INSERT_PRODUCTS = text(
    """
    INSERT INTO products (id, name, description, price, quantity, version, deleted_at)
    SELECT t.id, t.name, t.description, t.price, t.quantity, t.version, t.deleted_at
    FROM json_to_recordset(CAST(:rows AS json)) AS t(
        id bigint, name varchar, description text, price numeric, quantity integer,
        version bigint, deleted_at timestamptz
    )
    ON CONFLICT (id) DO NOTHING
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


# The version of each product row read (its xmin): what save_products checks it still is.
ReadVersions = dict[int, int]


async def load_products(
    session: AsyncSession, product_ids: Collection[int]
) -> tuple[dict[int, ProductState], ReadVersions]:
    """Read the current state of the given products (without locking them), and the version
    of each row read, for `save_products`."""
    if not product_ids:
        return {}, {}
    rows = await session.execute(_LOAD_PRODUCTS, {"ids": sorted(product_ids)})
    # Each field taken by its column's name, whatever the SELECT's order (one lookup per
    # statement, then plain tuple indexing: as fast as positional construction).
    columns = list(rows.keys())
    pick = itemgetter(*(columns.index(name) for name in ProductState._fields))
    version = columns.index("xmin")
    states: dict[int, ProductState] = {}
    read: ReadVersions = {}
    for row in rows:
        state = ProductState._make(pick(row))
        states[state.id] = state
        read[state.id] = row[version]
    return states, read


async def save_products(
    session: AsyncSession, products: Collection[ProductState], read: ReadVersions
) -> None:
    """Write the given product states: overwrite those read (`read` holds their versions),
    insert the others. Raises `Conflict` (the batch is then retried) if another transaction
    changed or inserted one of them since it was read."""
    if not products:
        return
    ordered = sorted(products, key=lambda p: p.id)
    inserts = [p for p in ordered if p.id not in read]
    updates = [p for p in ordered if p.id in read]
    # Inserts first: a conflicting insert waits for the other transaction's commit before this
    # transaction has overwritten anything (both sort by id, so the waits cannot cycle).
    if inserts:
        rows = _json_rows(_row(p) for p in inserts)
        result = await session.execute(_INSERT_PRODUCTS, {"rows": rows})
        _check(result, len(inserts), "inserted")
    if updates:
        rows = _json_rows(_row(p) | {"read_xmin": read[p.id]} for p in updates)
        result = await session.execute(_UPDATE_PRODUCTS, {"rows": rows})
        _check(result, len(updates), "changed")


def _row(product: ProductState) -> dict[str, object]:
    """The product's columns by name (a literal dict: a third of `_asdict()`'s cost)."""
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": product.price,
        "quantity": product.quantity,
        "version": product.version,
        "deleted_at": product.deleted_at,
    }


def _json_rows(rows: Iterable[dict[str, object]]) -> str:
    """A JSON array of row objects (Decimal as a string, datetime as RFC 3339 text), as
    json_to_recordset reads it. A value JSON cannot carry is the data's fault (permanent)."""
    try:
        return pydantic_core.to_json(list(rows)).decode()
    except pydantic_core.PydanticSerializationError as error:
        raise UnstorableRow(str(error)) from error


def _check(result: object, expected: int, what: str) -> None:
    written = int(getattr(result, "rowcount", 0) or 0)
    if written != expected:
        raise Conflict(
            f"{expected - written} of {expected} products were {what} by another transaction "
            "since this batch read them (a product in two partitions); retrying the batch"
        )


async def purge_processed(session: AsyncSession, older_than_seconds: float, limit: int) -> int:
    """Forget processed event ids older than the retention window; returns how many."""
    result = await session.execute(
        _PURGE_PROCESSED, {"seconds": older_than_seconds, "limit": limit}
    )
    return int(getattr(result, "rowcount", 0) or 0)
