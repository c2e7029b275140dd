"""Products, claimed event ids and positions move together, in one transaction, or not at all.

The event-id claims hide a split transaction from most tests (a redelivered batch turns into
duplicates), so these tests take the claims out of the picture or look at what only a single
transaction gives: nothing visible before the commit, no letter sent twice, no duplicate
counted where the batch was new.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from service.core.letters import DeadLetter
from service.write_path.retry import Backoff
from service.write_path.transaction import WritePath
from testbed.events import adjust, record, upsert
from testbed.oracle import table
from testbed.write_path import MemoryDeadLetterSink, guard
from tests.support.write_path import SimpleRecord, process


async def committed(engine: AsyncEngine) -> dict[str, Any]:
    """What another connection sees: products, positions and claimed ids."""
    async with engine.connect() as connection:
        products = (
            await connection.execute(text("SELECT id, quantity, version FROM products"))
        ).all()
        positions = (
            await connection.execute(
                text("SELECT topic, partition, next_offset FROM consumer_offsets")
            )
        ).all()
        claimed = (await connection.execute(text("SELECT count(*) FROM processed_events"))).all()
    return {
        "products": sorted(map(tuple, products)),
        "positions": sorted(map(tuple, positions)),
        "claimed": claimed[0][0],
    }


class FailingOnceSink(MemoryDeadLetterSink):
    """Fails its first send (a broker outage: transient), after the batch has written its
    products, claims and positions in the open transaction. Each call first records what
    the database shows outside that transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self.engine = engine
        self.calls = 0
        self.seen: list[dict[str, Any]] = []

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.calls += 1
        self.seen.append(await committed(self.engine))
        if self.calls == 1:
            raise KafkaConnectionError("the broker went away (test)")
        await super().send(letters)


def _batch(pairs: list[tuple[bytes, bytes]], start: int = 0) -> list[SimpleRecord]:
    return [SimpleRecord("t", 0, start + i, k, v) for i, (k, v) in enumerate(pairs)]


async def test_a_sink_failing_after_positions_are_written_moves_neither_products_nor_positions(
    engine: AsyncEngine,
) -> None:
    setup = WritePath(
        async_sessionmaker(engine), MemoryDeadLetterSink(), "g", Backoff(0.01, 0.1), guard=guard()
    )
    await process(setup, _batch([record(upsert(1, 1, quantity=10))]))
    before = await committed(engine)
    # An upsert claims no id (it is idempotent by its version); only adjustments do.
    assert before == {"products": [(1, 10, 1)], "positions": [("t", 0, 1)], "claimed": 0}

    sink = FailingOnceSink(engine)
    write_path = WritePath(async_sessionmaker(engine), sink, "g", Backoff(0.01, 0.1), guard=guard())
    batch = _batch([record(adjust(1, -4)), record(upsert(2, 1, quantity=1)), (b"1", b"junk")], 1)
    report = await process(write_path, batch)

    # While the first attempt sat in the sink, and after it failed (the retry's view),
    # nothing of the batch was visible: not the products, not the positions, not the claims.
    assert sink.seen == [before, before]
    assert (report.applied, report.duplicates, report.redelivered) == (2, 0, 0)
    assert [letter.record.offset for letter in sink.letters] == [3]
    after = await committed(engine)
    assert after == {
        "products": [(1, 6, 1), (2, 1, 1)],
        "positions": [("t", 0, 4)],
        "claimed": 1,
    }


@pytest.fixture
async def positions_fail_once(engine: AsyncEngine) -> AsyncIterator[None]:
    """The first move of a position (the UPDATE of advance_positions; creating a row is an
    INSERT and passes) fails with a serialization failure (transient): a sequence, which no
    rollback resets, lets it fail exactly once."""
    async with engine.begin() as connection:
        for statement in (
            "CREATE SEQUENCE test_positions_fail",
            "CREATE FUNCTION test_positions_fail() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF nextval('test_positions_fail') = 1 THEN "
            "RAISE EXCEPTION 'test: position write fails once' USING ERRCODE = '40001'; "
            "END IF; RETURN NEW; END $$",
            "CREATE TRIGGER test_positions_fail BEFORE UPDATE ON consumer_offsets "
            "FOR EACH ROW EXECUTE FUNCTION test_positions_fail()",
        ):
            await connection.execute(text(statement))
    try:
        yield
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER test_positions_fail ON consumer_offsets"))
            await connection.execute(text("DROP FUNCTION test_positions_fail()"))
            await connection.execute(text("DROP SEQUENCE test_positions_fail"))


async def test_a_failed_position_write_takes_the_products_and_letters_back_with_it(
    engine: AsyncEngine, positions_fail_once: None
) -> None:
    """Were positions written in a transaction of their own, the products would commit
    first: the retry would then count the batch's events as duplicates and send its dead
    letters a second time."""
    sink = MemoryDeadLetterSink()
    write_path = WritePath(async_sessionmaker(engine), sink, "g", Backoff(0.01, 0.1), guard=guard())
    pairs = [record(upsert(1, 1, quantity=10)), record(adjust(1, -4)), (b"1", b"junk")]

    report = await process(write_path, _batch(pairs))

    assert (report.applied, report.duplicates, report.redelivered) == (2, 0, 0)
    assert [letter.record.offset for letter in sink.letters] == [2]
    assert await committed(engine) == {
        "products": [(1, 6, 1)],
        "positions": [("t", 0, 3)],
        "claimed": 1,
    }


async def test_a_redelivery_is_dropped_by_the_stored_offset_alone(engine: AsyncEngine) -> None:
    """With the processed ids gone, only the position stored with the products can tell the
    redelivered batch from a new one."""
    sink = MemoryDeadLetterSink()
    write_path = WritePath(async_sessionmaker(engine), sink, "g", Backoff(0.01, 0.1), guard=guard())
    batch = _batch([record(upsert(1, 1, quantity=10)), record(adjust(1, -4)), (b"1", b"junk")])
    await process(write_path, batch)
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE processed_events"))

    again = await process(write_path, batch)

    assert (again.redelivered, again.applied, again.duplicates) == (3, 0, 0)
    assert (await table(engine))[1].quantity == 6
    assert [letter.record.offset for letter in sink.letters] == [2]  # not sent again
    assert (await committed(engine))["positions"] == [("t", 0, 3)]
