"""The SQL of checking and resetting stored positions (consumer_offsets), outside the write path.

Every change is a compare-and-set on the row it read: a position some other process moved in
the meantime (another consumer's batch, an operator's reset) is left alone and checked again.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.position_verdict import Stored

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
