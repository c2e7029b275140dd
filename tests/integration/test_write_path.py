"""The write path on real PostgreSQL (records handed in directly, DLQ in memory)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from service.config.settings import Settings
from service.core.domain import Reason
from service.core.letters import DeadLetter
from service.postgres import consumer_offsets
from service.postgres.engine import make_engine
from service.postgres.retention import purge_once
from service.write_path.retry import Backoff
from service.write_path.rewinds import Rewind
from service.write_path.transaction import WritePath
from testbed.events import BASE_TIME, LabelledSpec, adjust, delete, generate_records, record, upsert
from testbed.fake_consumer import FakeConsumer
from testbed.model import Product
from testbed.oracle import diff, expected_outcome, table
from testbed.write_path import MemoryDeadLetterSink, guard
from tests.support.write_path import SimpleRecord, process


def _write_path(
    engine: AsyncEngine, sink: MemoryDeadLetterSink, group: str = "g", **options: Any
) -> WritePath:
    return WritePath(
        async_sessionmaker(engine),
        sink,
        group,
        Backoff(0.01, 0.1),
        guard=guard(group_id=group),
        **options,
    )


async def _positions(engine: AsyncEngine, group: str = "g") -> dict[int, int]:
    """The stored next offset of each partition of `group`."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT partition, next_offset FROM consumer_offsets WHERE group_id = :g"),
            {"g": group},
        )
        return {partition: offset for partition, offset in rows.all()}


def _records(
    pairs: list[tuple[bytes, bytes]], partition: int = 0, start: int = 0
) -> list[SimpleRecord]:
    return [SimpleRecord("t", partition, start + i, k, v) for i, (k, v) in enumerate(pairs)]


async def test_a_redelivered_batch_changes_nothing(engine: AsyncEngine) -> None:
    sink = MemoryDeadLetterSink()
    write_path = _write_path(engine, sink)
    batch = _records([record(upsert(1, 1, quantity=10)), record(adjust(1, -4)), (b"1", b"junk")])

    first = await process(write_path, batch)
    second = await process(write_path, batch)

    assert (first.applied, first.redelivered) == (2, 0)
    assert (second.applied, second.redelivered) == (0, 3)
    assert (await table(engine))[1].quantity == 6
    assert [letter.reason for letter in sink.letters] == [Reason.INVALID_JSON]
    async with engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT next_offset FROM consumer_offsets WHERE topic = 't' AND partition = 0")
        )
    assert stored == 3


async def test_an_upstream_retry_at_another_offset_is_applied_once(engine: AsyncEngine) -> None:
    write_path = _write_path(engine, MemoryDeadLetterSink())
    retried = record(adjust(1, -1))
    await process(write_path, _records([record(upsert(1, 1, quantity=5)), retried]))
    report = await process(write_path, _records([retried], start=2))
    assert report.duplicates == 1
    assert (await table(engine))[1].quantity == 4


async def test_the_same_event_on_two_partitions_at_once_is_applied_once(
    engine: AsyncEngine,
) -> None:
    """An upstream retry that lands on another partition, handled by another consumer at the
    same moment: the second claim of the event id waits for the first transaction and then
    sees it as a duplicate (a read-then-insert check would apply it twice)."""
    first = _write_path(engine, MemoryDeadLetterSink(), group="g")
    await process(first, _records([record(upsert(1, 1, quantity=10))], partition=5))
    retried = record(adjust(1, -3))
    blocker = await engine.connect()
    await blocker.begin()
    # Hold product 1's row lock so both transactions have claimed the id before either ends.
    await blocker.execute(text("SELECT 1 FROM products WHERE id = 1 FOR UPDATE"))
    a = asyncio.create_task(process(first, _records([retried], partition=0)))
    b = asyncio.create_task(process(first, _records([retried], partition=1)))
    await asyncio.sleep(0.5)
    await blocker.rollback()
    await blocker.close()
    reports = await asyncio.gather(a, b)

    assert sorted((r.applied, r.duplicates) for r in reports) == [(0, 1), (1, 0)]
    assert (await table(engine))[1].quantity == 7


async def _claimed(engine: AsyncEngine) -> set[UUID]:
    async with engine.connect() as connection:
        return set((await connection.scalars(text("SELECT event_id FROM processed_events"))).all())


async def test_a_rejected_event_is_not_claimed_so_its_replay_applies_once(
    engine: AsyncEngine,
) -> None:
    """Rejected as unknown_product, its id stays unclaimed; once the product exists, the same
    record published again (a replayed dead letter) applies, and a second replay is a
    duplicate."""
    sink = MemoryDeadLetterSink()
    write_path = _write_path(engine, sink)
    body = adjust(3, 4)
    early = await process(write_path, _records([record(body), record(upsert(4, 1))]))
    assert [letter.reason for letter in sink.letters] == [Reason.UNKNOWN_PRODUCT]
    assert await _claimed(engine) == set()  # the rejected delta gave its claim back

    await process(write_path, _records([record(upsert(3, 1, quantity=10))], start=2))
    replay = await process(write_path, _records([record(body)], start=3))
    again = await process(write_path, _records([record(body)], start=4))

    assert (early.applied, replay.applied, again.applied, again.duplicates) == (1, 1, 0, 1)
    assert (await table(engine))[3].quantity == 14
    assert await _claimed(engine) == {UUID(body["event_id"])}
    assert len(sink.letters) == 1


async def test_an_id_rejected_then_applied_in_one_batch_stays_claimed(
    engine: AsyncEngine,
) -> None:
    sink = MemoryDeadLetterSink()
    write_path = _write_path(engine, sink)
    body = adjust(5, 2)
    rejected_twice = adjust(6, 1)
    pairs = [record(body), record(upsert(5, 1, quantity=1)), record(body), record(body)]
    pairs += [record(rejected_twice), record(rejected_twice)]

    report = await process(write_path, _records(pairs))

    assert (report.applied, report.duplicates) == (2, 1)
    assert [(letter.record.offset, letter.reason) for letter in sink.letters] == [
        (0, Reason.UNKNOWN_PRODUCT),
        (4, Reason.UNKNOWN_PRODUCT),
        (5, Reason.UNKNOWN_PRODUCT),
    ]
    assert (await table(engine))[5].quantity == 3
    claimed = await _claimed(engine)
    assert UUID(body["event_id"]) in claimed
    assert UUID(rejected_twice["event_id"]) not in claimed


async def test_only_stock_adjustments_claim_their_ids(engine: AsyncEngine) -> None:
    """Upserts and deletes are idempotent by their version, so the batch records only the
    adjustments' ids: an applied delta keeps its claim, a rejected delta and a rejected
    delete (unknown product) leave none, and no upsert or delete ever has one."""
    sink = MemoryDeadLetterSink()
    delta, unknown_delta, unknown_delete = adjust(1, 2), adjust(8, 1), delete(9, 1)
    pairs = [record(upsert(1, 1, quantity=5)), record(delta), record(upsert(2, 1))]
    pairs += [record(delete(2, 2)), record(unknown_delta), record(unknown_delete)]

    report = await process(_write_path(engine, sink), _records(pairs))

    assert (report.applied, report.stale, report.duplicates) == (4, 0, 0)
    assert [letter.record.offset for letter in sink.letters] == [4, 5]
    assert await _claimed(engine) == {UUID(delta["event_id"])}


async def test_a_repeated_upsert_or_delete_changes_the_table_once_without_a_claim(
    engine: AsyncEngine,
) -> None:
    """A repeated upsert or delete (an upstream retry at another offset, on another partition,
    in the same batch, or long after its first copy, when no claim could remember it) is
    stale by its version: the table is the one the first copies made."""
    sink = MemoryDeadLetterSink()
    write_path = _write_path(engine, sink)
    create, bump = record(upsert(1, 1, quantity=5)), record(upsert(1, 2, name="v2", quantity=50))
    remove = record(delete(2, 2))
    first = [create, record(upsert(2, 1, quantity=3)), remove, bump, record(adjust(1, -1))]
    await process(write_path, _records(first))
    expected = {
        1: Product(1, "v2", None, Decimal("9.99"), 49, 2),
        2: Product(2, "thing", None, Decimal("9.99"), 3, 2, BASE_TIME),
    }
    assert await table(engine) == expected

    again = await process(write_path, _records([bump, create, remove], start=5))
    elsewhere = await process(write_path, _records([remove, bump, create], partition=1))
    in_one_batch = [record(adjust(1, 1)), create, bump, create, remove, remove]
    same_batch = await process(write_path, _records(in_one_batch, start=8))
    assert await table(engine) == expected | {1: expected[1]._replace(quantity=50)}

    assert await purge_once(async_sessionmaker(engine), retention_s=0) == 2
    assert await _claimed(engine) == set()
    purged = await process(write_path, _records([create, bump, remove], start=14))

    reports = (again, elsewhere, same_batch, purged)
    assert [(r.applied, r.stale, r.duplicates) for r in reports] == [
        (0, 3, 0),
        (0, 3, 0),
        (1, 5, 0),
        (0, 3, 0),
    ]
    assert await table(engine) == expected | {1: expected[1]._replace(quantity=50)}
    assert sink.letters == []


async def test_the_same_upsert_on_two_partitions_at_once_changes_the_table_once(
    engine: AsyncEngine,
) -> None:
    """Without a claim to wait on, two consumers can hold the same upsert at once (after the
    partition count changed): the later write finds the row changed since it read it, its
    batch is retried, and the copy is then stale; the delta after the first copy stays."""
    write_path = _write_path(engine, MemoryDeadLetterSink())
    await process(write_path, _records([record(upsert(1, 1, quantity=0))], partition=5))
    retried = record(upsert(1, 2, quantity=10))
    blocker = await engine.connect()
    await blocker.begin()
    await blocker.execute(text("SELECT 1 FROM products WHERE id = 1 FOR UPDATE"))
    a = asyncio.create_task(
        process(write_path, _records([retried, record(adjust(1, 3))], partition=0))
    )
    b = asyncio.create_task(process(write_path, _records([retried], partition=1)))
    await asyncio.sleep(0.5)  # both read version 1 and wait to write it
    await blocker.rollback()
    await blocker.close()
    reports = await asyncio.gather(a, b)

    stored = (await table(engine))[1]
    assert (stored.version, stored.quantity) == (2, 13)
    assert (sum(r.applied for r in reports), sum(r.stale for r in reports)) == (2, 1)
    assert sum(r.duplicates for r in reports) == 0


async def test_a_claim_given_back_by_a_concurrent_rejection_lets_the_waiting_batch_apply(
    engine: AsyncEngine,
) -> None:
    """Two consumers hold the same event at once. The first claims it, then rejects it and
    gives the claim back; the second, whose claim waited for the first transaction, must
    then decide the event itself (here: apply it), not take it for a duplicate."""
    write_path = _write_path(engine, MemoryDeadLetterSink())
    await process(
        write_path, _records([record(upsert(1, 1, quantity=1)), record(upsert(2, 1))], partition=5)
    )
    retried = record(adjust(1, -3))  # insufficient at quantity 1; fine at 10
    blocker = await engine.connect()
    await blocker.begin()
    await blocker.execute(text("SELECT 1 FROM products WHERE id IN (1, 2) FOR UPDATE"))
    # a also changes product 2, so it waits for the blocker when it writes product 2.
    a = asyncio.create_task(
        process(write_path, _records([retried, record(upsert(2, 2))], partition=0))
    )
    await asyncio.sleep(0.5)  # a has claimed the id, given it back, and waits for the row
    refill = record(upsert(1, 2, quantity=10))
    b = asyncio.create_task(process(write_path, _records([refill, retried], partition=1)))
    await asyncio.sleep(0.5)  # b's claim waits for a's transaction
    await blocker.rollback()
    await blocker.close()
    first, second = await asyncio.gather(a, b)

    assert (first.applied, sum(first.dead_lettered.values())) == (1, 1)
    assert (second.applied, second.duplicates) == (2, 0)
    assert (await table(engine))[1].quantity == 7


async def test_a_product_written_from_two_partitions_at_once_keeps_both_changes(
    engine: AsyncEngine,
) -> None:
    """After the partition count changed, one product's events sit in two partitions that two
    consumers write at the same moment. Products are read without row locks: the later write
    finds the row changed since it read it, and its batch is retried on the new state."""
    write_path = _write_path(engine, MemoryDeadLetterSink())
    await process(write_path, _records([record(upsert(1, 1, quantity=0))], partition=5))
    blocker = await engine.connect()
    await blocker.begin()
    await blocker.execute(text("SELECT 1 FROM products WHERE id = 1 FOR UPDATE"))
    a = asyncio.create_task(process(write_path, _records([record(adjust(1, 2))], partition=0)))
    b = asyncio.create_task(process(write_path, _records([record(adjust(1, 3))], partition=1)))
    await asyncio.sleep(0.5)  # both read quantity 0 and wait to write it
    await blocker.rollback()
    await blocker.close()
    reports = await asyncio.gather(a, b)

    assert [r.applied for r in reports] == [1, 1]
    assert (await table(engine))[1].quantity == 5
    retries = write_path.metrics.registry.get_sample_value("inventory_sink_batch_retries_total")
    assert retries is not None and retries >= 1


async def test_a_new_product_inserted_from_two_partitions_at_once_keeps_both_changes(
    engine: AsyncEngine,
) -> None:
    """Both consumers find the product absent: the second insert waits for the first
    transaction, finds the row there, and its batch is retried on it (an upsert without a
    quantity keeps the stored one; the older version becomes stale) instead of overwriting it."""
    write_path = _write_path(engine, MemoryDeadLetterSink())
    await process(write_path, _records([record(upsert(2, 1))], partition=5))
    blocker = await engine.connect()
    await blocker.begin()
    await blocker.execute(text("SELECT 1 FROM products WHERE id = 2 FOR UPDATE"))
    # Each batch also changes product 2, which the blocker holds: both have inserted or tried
    # to insert product 7 before either commits.
    first = [record(upsert(7, 1, quantity=10)), record(upsert(2, 2))]
    second = [record(upsert(7, 2, name="renamed")), record(upsert(7, 1, quantity=99))]
    second.append(record(upsert(2, 3)))
    a = asyncio.create_task(process(write_path, _records(first, partition=0)))
    await asyncio.sleep(0.3)
    b = asyncio.create_task(process(write_path, _records(second, partition=1)))
    await asyncio.sleep(0.5)
    await blocker.rollback()
    await blocker.close()
    first_report, second_report = await asyncio.gather(a, b)

    stored = (await table(engine))[7]
    assert (stored.name, stored.quantity, stored.version) == ("renamed", 10, 2)
    assert (first_report.applied, second_report.applied, second_report.stale) == (2, 2, 1)


async def test_two_consumers_racing_on_one_partition_apply_each_record_once(
    engine: AsyncEngine,
) -> None:
    """A consumer that lost its partition (a zombie) and the new owner process overlapping
    records at the same time: the partition's row lock serialises them and the later one
    drops what the earlier one committed."""
    pairs = [record(upsert(1, 1, quantity=0))] + [record(adjust(1, 1)) for _ in range(200)]
    records = _records(pairs)
    sink = MemoryDeadLetterSink()
    zombie, owner = _write_path(engine, sink), _write_path(engine, sink)

    # The zombie must reach the partition's row lock first (the owner, first, would find the
    # position at 0 and be rewound): both queue behind a held lock, in that order. The row is
    # committed first, so both wait for that lock, not for a row being inserted.
    sessions = async_sessionmaker(engine)
    async with sessions() as creator, creator.begin():
        await consumer_offsets.lock_positions(creator, "g", {("t", 0)})
    async with sessions() as blocker, blocker.begin():
        assert await consumer_offsets.lock_positions(blocker, "g", {("t", 0)}) == {("t", 0): 0}
        first = asyncio.create_task(process(zombie, records[:150]))
        await asyncio.sleep(0.5)
        second = asyncio.create_task(process(owner, records[50:]))
        await asyncio.sleep(0.5)
    reports = await asyncio.gather(first, second)

    assert sum(r.applied for r in reports) == 201
    # The later batch drops the 100 overlapping records by the stored offset (redelivered),
    # not by their event ids (duplicates).
    assert sorted((r.redelivered, r.duplicates) for r in reports) == [(0, 0), (100, 0)]
    assert (await table(engine))[1].quantity == 200


async def test_a_labelled_stream_in_many_batches_matches_the_independent_model(
    engine: AsyncEngine,
) -> None:
    """Same-version and stale upserts and deletes, deltas across the quantity limit, records
    with headers and records over the size limit: the table, the claimed ids and every dead
    letter (offset, reason, key, value, headers) are the model's."""
    limit = 4096
    records = generate_records(
        LabelledSpec(events=3000, products=50, seed=11, max_record_bytes=limit)
    )
    sink = MemoryDeadLetterSink()
    write_path = _write_path(engine, sink, max_record_bytes=limit)
    batch = [SimpleRecord("t", 0, i, r.key, r.value, r.headers) for i, r in enumerate(records)]
    reports = [
        await process(write_path, batch[start : start + 250]) for start in range(0, len(batch), 250)
    ]
    expected = expected_outcome(records, limit)
    counted = {
        "applied": sum(r.applied for r in reports),
        "stale": sum(r.stale for r in reports),
        "duplicate": sum(r.duplicates for r in reports),
    }
    assert counted == {fate: expected.fates.count(fate) for fate in counted}
    assert diff(expected.products, await table(engine)) == []
    assert await _claimed(engine) == expected.processed_ids
    got = [
        (letter.record.offset, letter.reason.value, letter.headers()[:-5])
        for letter in sink.letters
    ]
    wanted = [(i, reason, list(records[i].headers)) for i, reason in expected.letters().items()]
    assert got == wanted
    assert {reason for _, reason, _ in wanted} >= {
        "invalid_json",
        "invalid_event",
        "unknown_product",
        "insufficient_stock",
        "quantity_overflow",
        "record_too_large",
    }
    assert {"stale", "duplicate"} <= set(expected.fates)


async def test_records_of_a_revoked_partition_are_abandoned_not_written(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    write_path = _write_path(engine, MemoryDeadLetterSink())
    owned = _records([record(upsert(1, 1, quantity=1))], partition=0)
    revoked = _records([record(upsert(2, 1, quantity=1)), (b"2", b"junk")], partition=2)
    revoked += _records([record(upsert(3, 1, quantity=1))], partition=1)

    with caplog.at_level(logging.INFO, "service.pipeline"):
        report = await process(write_path, owned + revoked, still_owned=lambda t, p: p == 0)

    assert (report.applied, report.abandoned) == (1, 3)
    assert set(await table(engine)) == {1}
    (line,) = [r for r in caplog.records if r.name == "service.pipeline"]
    assert line.getMessage() == "abandoning records of revoked partitions [('t', 1), ('t', 2)]"
    assert line.partitions == ["t[1]", "t[2]"]  # type: ignore[attr-defined]
    positions = await _positions(engine)
    assert positions[0] == 1
    assert positions.get(1, 0) == 0  # nothing recorded as done for the revoked partition


class FrozenOnceSink(MemoryDeadLetterSink):
    """The first batch's dead letters block the whole process for `frozen_s` (as SIGSTOP or
    a stopped VM would), during which the group gives partition 2 to another member."""

    def __init__(self, owned: set[int], frozen_s: float) -> None:
        super().__init__()
        self.owned, self.frozen_s, self.calls = owned, frozen_s, 0

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.frozen_s)  # noqa: ASYNC251 - the freeze: nothing on the loop runs
            self.owned.discard(2)
        await super().send(letters)


async def test_a_transaction_the_process_froze_in_is_rolled_back_and_run_again(
    engine: AsyncEngine,
) -> None:
    """Frozen for most of the group's session timeout, the consumer may have lost partitions
    while its transaction was open: the transaction is not committed, and the batch is run
    again on what the consumer owns then."""
    owned = {0, 2}
    sink = FrozenOnceSink(owned, frozen_s=0.6)
    write_path = _write_path(engine, sink, session_timeout_s=0.8)
    batch = _records([record(upsert(1, 1, quantity=1))], partition=0)
    batch += _records([record(upsert(2, 1, quantity=1)), (b"2", b"junk")], partition=2)

    report = await process(write_path, batch, still_owned=lambda t, p: p in owned)

    assert (report.applied, report.abandoned) == (1, 2)
    assert write_path.metrics.registry.get_sample_value("inventory_sink_batch_retries_total") == 1
    assert set(await table(engine)) == {1}  # partition 2's product was never committed
    # The letter went out before the rollback (letters are at-least-once; the new owner
    # publishes it again), not a second time from this consumer.
    assert [letter.reason for letter in sink.letters] == [Reason.INVALID_JSON]
    positions = await _positions(engine)
    assert positions[0] == 1
    assert positions.get(2, 0) == 0


class SlowSink(MemoryDeadLetterSink):
    """A dead-letter topic that takes `slow_s` to acknowledge each batch of letters (far
    away, or struggling), while the process runs on."""

    def __init__(self, slow_s: float) -> None:
        super().__init__()
        self.slow_s = slow_s

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        await asyncio.sleep(self.slow_s)
        await super().send(letters)


async def test_letters_acknowledged_slower_than_the_session_timeout_are_committed_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Slow is not frozen: the server's idle limit (the session timeout, as the service sets
    it) must not end a live transaction that waits for its letters, nor may the write path
    give it up; else the batch is retried for ever."""
    consumer = make_engine(settings, idle_in_transaction_ms=1000)
    sink = SlowSink(slow_s=2.5)
    write_path = _write_path(consumer, sink, session_timeout_s=1.0)
    batch = _records([record(upsert(1, 1, quantity=1)), (b"1", b"junk")])
    try:
        async with asyncio.timeout(30):
            report = await process(write_path, batch)
    finally:
        await consumer.dispose()

    assert (report.applied, report.dead_lettered) == (1, Counter({"invalid_json": 1}))
    assert write_path.metrics.registry.get_sample_value("inventory_sink_batch_retries_total") == 0
    assert [letter.reason for letter in sink.letters] == [Reason.INVALID_JSON]
    assert set(await table(engine)) == {1}
    assert await _positions(engine) == {0: 2}


async def test_a_batch_too_slow_for_the_statement_timeout_is_written_in_smaller_parts(
    engine: AsyncEngine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A link too slow for a whole batch's statements within POSTGRES_TIMEOUT_S (here each
    product row costs the server 20 ms; the batch's needs 1.9 s of the 0.5 s allowed): the
    whole batch would time out on every attempt. Halved after each timeout, parts of the batch
    fit, and all of it is committed, in order, once."""
    async with engine.begin() as connection:
        for statement in _SLOW_ROWS:
            await connection.execute(text(statement))
    consumer = make_engine(settings.model_copy(update={"postgres_timeout_s": 0.5}))
    write_path = _write_path(consumer, MemoryDeadLetterSink())
    batch = _records([record(upsert(i, 1, quantity=i)) for i in range(1, 97)])
    try:
        with caplog.at_level(logging.WARNING, "service.pipeline"):
            async with asyncio.timeout(60):
                report = await process(write_path, batch)
    finally:
        await consumer.dispose()
        async with engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER slow_rows ON products"))

    assert report.applied == 96
    assert {i: p.quantity for i, p in (await table(engine)).items()} == {i: i for i in range(1, 97)}
    assert await _positions(engine) == {0: 96}
    limit = write_path.part_size.limit
    assert limit is not None and limit <= 24  # 96 -> 48 -> 24 at least: 24 rows need 0.48 s
    retries = write_path.metrics.registry.get_sample_value("inventory_sink_batch_retries_total")
    assert retries is not None and retries >= 2
    shrunk = [r.getMessage() for r in caplog.records if "ran out of time" in r.getMessage()]
    assert shrunk[0].startswith("96 records ran out of time in one transaction (")
    assert "writing at most 48 per transaction until it fits" in shrunk[0]


# Every product row written costs the server 20 ms, as a slow link costs the write path.
_SLOW_ROWS = (
    "CREATE OR REPLACE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$",
    "CREATE TRIGGER slow_rows BEFORE INSERT OR UPDATE ON products "
    "FOR EACH ROW EXECUTE FUNCTION slow_row()",
)


async def test_processed_ids_older_than_the_retention_are_forgotten(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO processed_events (event_id, processed_at) "
                "SELECT gen_random_uuid(), now() - make_interval(hours => h) "
                "FROM generate_series(1, 30) AS h"
            )
        )
    deleted = await purge_once(async_sessionmaker(engine), retention_s=10 * 3600 + 60, chunk=7)
    async with engine.connect() as connection:
        left = await connection.scalar(text("SELECT count(*) FROM processed_events"))
    assert (deleted, left) == (20, 10)


async def test_a_batch_starting_past_the_stored_position_is_rewound_once(
    engine: AsyncEngine,
) -> None:
    """Records 0..4 never reached the handler: nothing is written and the consumer is sent
    back to offset 0. If the log really has nothing there (retention), the same batch comes
    again and is accepted."""
    write_path = _write_path(engine, MemoryDeadLetterSink())
    await process(write_path, _records([record(upsert(9, 1, quantity=1))]))  # stored: 1
    late = _records([record(adjust(9, 1))], start=5)

    seeks: list[tuple[tuple[str, int], int]] = []

    def seek(tp: tuple[str, int], offset: int) -> None:
        seeks.append((tp, offset))

    first = await process(write_path, late, seek=seek)
    assert (first.rewinds, first.applied, first.abandoned) == ({("t", 0): Rewind(1, 5)}, 0, 1)
    assert seeks == [(("t", 0), 1)]
    assert (await table(engine))[9].quantity == 1

    again = await process(write_path, late, seek=seek)
    assert (again.rewinds, again.applied) == ({}, 1)
    assert (await table(engine))[9].quantity == 2
    assert seeks == [(("t", 0), 1)]


async def test_a_position_that_moves_while_kafka_is_asked_is_never_written_past(
    engine: AsyncEngine,
) -> None:
    """The consumer was sought back to 1 and the refetch starts at 5: the partition guard is
    asked about that gap before the positions are locked. Meanwhile another writer commits
    offsets 1..2 (stored: 3). The locked row, not the snapshot, decides: the batch is not
    written past offsets 3..4, the consumer is sought back to 3 instead; the refetch from 3
    is written."""
    sessions = async_sessionmaker(engine)
    consumer = FakeConsumer([("t", 0)], log_ends={("t", 0): 6})

    class AnotherWriterCommits(FakeConsumer):
        async def beginning_offsets(self, partitions: list[Any]) -> dict[Any, int]:
            looked = await consumer.beginning_offsets(partitions)
            async with sessions() as session, session.begin():
                await consumer_offsets.advance_positions(session, "g", {("t", 0): 3})
            return looked

    write_path = _write_path(engine, MemoryDeadLetterSink())
    write_path.guard = guard(AnotherWriterCommits([("t", 0)], log_ends={("t", 0): 6}))
    await process(write_path, _records([record(upsert(9, 1, quantity=1))]))  # stored: 1
    write_path.rewinds.remember({("t", 0): Rewind(1, 5)})  # sought back to 1 before
    late = _records([record(adjust(9, 1))], start=5)
    seeks: list[tuple[tuple[str, int], int]] = []

    def seek(tp: tuple[str, int], offset: int) -> None:
        seeks.append((tp, offset))

    moved = await process(write_path, late, seek=seek)

    assert consumer.events == [("beginning_offsets", [("t", 0)])]  # asked before the lock
    assert (moved.rewinds, moved.applied, moved.next_offsets) == ({("t", 0): Rewind(3, 5)}, 0, {})
    assert seeks == [(("t", 0), 3)]
    assert (await table(engine))[9].quantity == 1
    async with sessions() as session:
        assert await consumer_offsets.read_positions(session, "g", {"t"}) == {("t", 0): 3}

    write_path.guard = guard(FakeConsumer([("t", 0)]))
    refetch = _records([record(upsert(9, 2, quantity=5)), record(adjust(9, 1))], start=3)
    assert (await process(write_path, refetch, seek=seek)).applied == 2
    assert (await table(engine))[9].quantity == 6


async def test_an_event_the_database_refuses_is_dead_lettered_and_the_rest_applied(
    engine: AsyncEngine,
) -> None:
    """A valid event the database cannot store (here: a constraint added for the test) is
    isolated by bisection and dead-lettered as `unstorable`; it never stops the consumer."""
    async with engine.begin() as connection:
        await connection.execute(
            text("ALTER TABLE products ADD CONSTRAINT test_refuse_666 CHECK (id <> 666)")
        )
    try:
        sink = MemoryDeadLetterSink()
        write_path = _write_path(engine, sink)
        pairs = [record(upsert(p, 1, quantity=1)) for p in (1, 2, 666, 3, 4, 5, 6)]
        report = await asyncio.wait_for(process(write_path, _records(pairs)), timeout=30)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE products DROP CONSTRAINT test_refuse_666"))
    assert report.applied == 6
    assert set(await table(engine)) == {1, 2, 3, 4, 5, 6}
    assert [(letter.record.offset, letter.reason) for letter in sink.letters] == [
        (2, Reason.UNSTORABLE)
    ]
    assert report.next_offsets == {("t", 0): 7}
