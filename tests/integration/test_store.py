"""The table modules' functions (service/postgres/consumer_offsets.py, processed_events.py,
products.py) on the real PostgreSQL, one at a time: what each reads, writes and returns, and how
many statements it costs (counted on the connection, whatever their text)."""

from __future__ import annotations

import typing
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.postgres import consumer_offsets, processed_events, products

# The row type products.py reads and writes, taken from its signature (so a rename of the domain's
# class does not touch this test).
Row: Any = typing.get_args(
    typing.get_args(typing.get_type_hints(products.load_products)["return"])[0]
)[1]


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with async_sessionmaker(engine)() as session:
        yield session


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The statements sent to PostgreSQL meanwhile (BEGIN and COMMIT are not statements)."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def positions(engine: AsyncEngine) -> set[tuple[str, str, int, int]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT group_id, topic, partition, next_offset FROM consumer_offsets")
        )
        return {tuple(row) for row in rows}  # type: ignore[misc]


async def test_new_partitions_start_at_zero_and_known_ones_cost_one_statement(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    wanted = {("a", 0), ("a", 1), ("b", 3)}
    with statements(engine) as sent:
        async with session.begin():
            assert await consumer_offsets.lock_positions(session, "g", wanted) == dict.fromkeys(
                wanted, 0
            )
    assert len(sent) == 3  # lock, create the missing rows, lock again
    assert await positions(engine) == {("g", t, p, 0) for t, p in wanted}

    async with session.begin():
        await consumer_offsets.advance_positions(session, "g", {("a", 1): 7, ("b", 3): 2})
    with statements(engine) as sent:
        async with session.begin():
            found = await consumer_offsets.lock_positions(session, "g", wanted)
    assert found == {("a", 0): 0, ("a", 1): 7, ("b", 3): 2}
    assert len(sent) == 1

    # Another group has positions of its own; a partial set locks only what it names.
    async with session.begin():
        assert await consumer_offsets.lock_positions(session, "h", {("a", 1)}) == {("a", 1): 0}
        assert await consumer_offsets.lock_positions(session, "g", {("a", 1)}) == {("a", 1): 7}


async def test_positions_advance_per_partition_and_never_move_back(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    async with session.begin():
        await consumer_offsets.lock_positions(session, "g", {("a", 0), ("a", 1), ("b", 0)})
        await consumer_offsets.lock_positions(session, "h", {("a", 0)})
    async with session.begin():
        await consumer_offsets.advance_positions(
            session, "g", {("b", 0): 4, ("a", 1): 9, ("a", 0): 5}
        )
    async with session.begin():
        await consumer_offsets.advance_positions(session, "g", {("a", 1): 3, ("a", 0): 6})
    with statements(engine) as sent:
        async with session.begin():
            await consumer_offsets.advance_positions(session, "g", {})
    assert sent == []
    assert await positions(engine) == {
        ("g", "a", 0, 6),
        ("g", "a", 1, 9),  # 3 is behind 9: kept
        ("g", "b", 0, 4),
        ("h", "a", 0, 0),  # another group's row is not touched
    }


async def test_read_positions_returns_the_groups_rows_of_the_named_topics(
    session: AsyncSession,
) -> None:
    async with session.begin():
        await consumer_offsets.lock_positions(
            session, "g", {("a", 0), ("a", 2), ("b", 0), ("c", 0)}
        )
        await consumer_offsets.lock_positions(session, "h", {("a", 0)})
        await consumer_offsets.advance_positions(session, "g", {("a", 2): 11, ("c", 0): 1})
        await consumer_offsets.advance_positions(session, "h", {("a", 0): 5})
    async with session.begin():
        found = await consumer_offsets.read_positions(session, "g", {"a", "c"})
    assert found == {("a", 0): 0, ("a", 2): 11, ("c", 0): 1}


async def test_claims_return_the_ids_claimed_before_and_released_ids_are_free_again(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with session.begin():
        assert await processed_events.claim_events(session, [first, second, first]) == set()
    async with session.begin():
        assert await processed_events.claim_events(session, [second, third]) == {second}
    async with session.begin():
        await processed_events.release_events(session, [second, uuid.uuid4()])
    async with session.begin():
        assert await processed_events.claim_events(session, [second, first]) == {first}
    with statements(engine) as sent:
        async with session.begin():
            assert await processed_events.claim_events(session, []) == set()
            await processed_events.release_events(session, [])
    assert sent == []
    async with engine.connect() as connection:
        claimed = set(await connection.scalars(text("SELECT event_id FROM processed_events")))
    assert claimed == {first, second, third}


async def test_products_are_saved_and_loaded_field_for_field(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    deleted = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    two = Row(2, "two", None, Decimal("0.01"), 0, 1, deleted)
    one = Row(1, "one", "first", Decimal("12345.67"), 2_147_483_647, 9_000_000_000, None)
    three = Row(3, "three", "", Decimal("9.99"), 5, 2, None)
    async with session.begin():
        await products.save_products(session, [two, one, three], {})
    async with session.begin():
        loaded, versions = await products.load_products(session, {3, 1, 2, 4})
        assert loaded == {1: one, 2: two, 3: three}
        assert set(versions) == {1, 2, 3}

    moved = Row(1, "uno", None, Decimal("1.50"), 3, 9_000_000_001, deleted)
    async with session.begin():
        await products.save_products(session, [moved], {1: versions[1]})
    async with session.begin():
        assert (await products.load_products(session, {1, 3}))[0] == {1: moved, 3: three}
        assert await products.load_products(session, {7}) == ({}, {})

    with statements(engine) as sent:
        async with session.begin():
            assert await products.load_products(session, set()) == ({}, {})
            await products.save_products(session, [], {})
    assert sent == []


async def test_the_listing_has_every_product_by_id_with_deleted_ones_flagged(
    session: AsyncSession,
) -> None:
    gone = datetime(2026, 3, 4, tzinfo=UTC)
    async with session.begin():
        await products.save_products(
            session,
            [
                Row(5, "five", None, Decimal("5.50"), 5, 3, gone),
                Row(2, "two", "x", Decimal("0.01"), 0, 1, None),
            ],
            {},
        )
    async with session.begin():
        listed = await products.list_products(session)
    assert listed == [
        (2, "two", Decimal("0.01"), 0, 1, False),
        (5, "five", Decimal("5.50"), 5, 3, True),
    ]
    assert listed[1].deleted and listed[0].name == "two"


async def _processed(engine: AsyncEngine, ages_s: list[int]) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in ages_s]
    async with engine.begin() as connection:
        for event_id, age in zip(ids, ages_s, strict=True):
            await connection.execute(
                text(
                    "INSERT INTO processed_events (event_id, processed_at) "
                    "VALUES (:id, now() - make_interval(secs => :age))"
                ),
                {"id": event_id, "age": age},
            )
    return ids


async def test_purge_forgets_ids_older_than_the_window_in_chunks_and_counts_them(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    old = await _processed(engine, [7200, 7200, 3700, 3700, 3601])
    young = await _processed(engine, [0, 3500])
    deleted = []
    for _ in range(4):
        async with session.begin():
            deleted.append(await processed_events.purge_processed(session, 3600, limit=2))
    assert deleted == [2, 2, 1, 0]
    async with engine.connect() as connection:
        kept = set(await connection.scalars(text("SELECT event_id FROM processed_events")))
    assert kept == set(young) and not kept & set(old)
