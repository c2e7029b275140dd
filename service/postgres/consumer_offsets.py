"""The SQL of consumer_offsets: the stored positions (the next offset of each partition).

The write path locks its partitions' rows, and advances them, within each batch's
transaction (`lock_positions`, `advance_positions`: arrays, one round trip whatever the batch
size, constant text so asyncpg prepares each once); the lag and the position watch read them
(`read_positions`).

Checking and resetting them outside the write path (`read`, `move`, `set_position`: the
partition guard, `inventory-sink positions reset`): every change there is a compare-and-set
on the row it read, so a position some other process moved in the meantime (another
consumer's batch, an operator's reset) is left alone and checked again.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.position_verdict import Stored
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

_READ = text(
    """
    SELECT partition, next_offset, topic_id FROM consumer_offsets
    WHERE group_id = :group_id AND topic = :topic
    """
)

_CREATE = text(
    """
    INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, topic_id)
    VALUES (:group_id, :topic, :partition, :offset, :topic_id)
    ON CONFLICT DO NOTHING
    RETURNING next_offset
    """
)

_MOVE = text(
    """
    UPDATE consumer_offsets
    SET next_offset = :offset, topic_id = :topic_id, updated_at = now()
    WHERE group_id = :group_id AND topic = :topic AND partition = :partition
      AND next_offset = :expected_offset
      AND topic_id IS NOT DISTINCT FROM CAST(:expected_topic_id AS uuid)
    RETURNING next_offset
    """
)

_SET = text(
    """
    INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, topic_id)
    VALUES (:group_id, :topic, :partition, :offset, :topic_id)
    ON CONFLICT (group_id, topic, partition) DO UPDATE
    SET next_offset = EXCLUDED.next_offset, topic_id = EXCLUDED.topic_id, updated_at = now()
    """
)


async def read(session: AsyncSession, group_id: str, topic: str) -> dict[int, Stored]:
    """The stored position of every partition of `topic` the group has one for."""
    rows = await session.execute(_READ, {"group_id": group_id, "topic": topic})
    return {partition: Stored(offset, topic_id) for partition, offset, topic_id in rows}


async def move(
    session: AsyncSession,
    group_id: str,
    topic: str,
    partition: int,
    expected: Stored | None,
    offset: int,
    topic_id: uuid.UUID | None,
) -> bool:
    """Store `offset` (and `topic_id`) if the row still holds `expected` (None: no row yet).
    False when the row changed in the meantime."""
    params = {
        "group_id": group_id,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "topic_id": topic_id,
    }
    if expected is None:
        result = await session.execute(_CREATE, params)
    else:
        params["expected_offset"] = expected.offset
        params["expected_topic_id"] = expected.topic_id
        result = await session.execute(_MOVE, params)
    return result.first() is not None


async def set_position(
    session: AsyncSession,
    group_id: str,
    topic: str,
    partition: int,
    offset: int,
    topic_id: uuid.UUID | None,
) -> None:
    """Store `offset` (and `topic_id`) whatever the row holds: the operator's reset."""
    await session.execute(
        _SET,
        {
            "group_id": group_id,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "topic_id": topic_id,
        },
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
