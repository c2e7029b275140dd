"""The benchmark's prefill (bench/prefill.py) on real PostgreSQL: what it leaves in the
tables, and that the verification (bench/verify.py) still judges the stream's rows alone."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bench.prefill import PRODUCT_BASE, Prefill, prepare
from bench.target import Target
from bench.verify import check_table
from service.config.settings import Settings
from service.postgres.retention import purge_once
from service.write_path.retry import Backoff
from service.write_path.transaction import WritePath
from testbed.events import adjust, record, upsert
from testbed.oracle import expected_outcome
from testbed.write_path import MemoryDeadLetterSink, guard
from tests.support.write_path import SimpleRecord, process

STREAM = [
    record(upsert(1, 1, name="one", price="1.00", quantity=5)),
    record(adjust(1, 2)),
    record(upsert(7, 1, name="seven", price="7.00")),
    record(adjust(7, -1)),  # rejected: no stock to take
    record(adjust(3, 1)),  # rejected: no such product yet
]
SPEC = Prefill(products=1000, processed=300, expired=200, retention_hours=1.0, stream_products=10)


async def _count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text(sql), {"base": PRODUCT_BASE})).scalar_one())


async def test_the_prefill_fills_the_tables_beside_the_streams_ids(
    engine: AsyncEngine, settings: Settings
) -> None:
    prefilled = await prepare(Target(settings, "postgres"), SPEC)

    assert prefilled is not None
    assert await _count(engine, "SELECT count(*) FROM products WHERE id >= :base") == 1000
    # The stream's products' placeholders are gone again: ids 1..10 are the stream's alone.
    assert await _count(engine, "SELECT count(*) FROM products WHERE id < :base") == 0
    assert await _count(engine, "SELECT count(DISTINCT event_id) FROM processed_events") == 500
    expired = "SELECT count(*) FROM processed_events WHERE processed_at < now() - interval '1h'"
    assert await _count(engine, expired) == 200


async def test_the_streams_rows_are_verified_beside_the_prefilled_ones(
    engine: AsyncEngine, settings: Settings
) -> None:
    target = Target(settings, "postgres")
    prefilled = await prepare(target, SPEC)
    sessions = async_sessionmaker(engine)
    write_path = WritePath(sessions, MemoryDeadLetterSink(), "g", Backoff(0.01, 0.1), guard=guard())
    records = [SimpleRecord("t", 0, i, k, v) for i, (k, v) in enumerate(STREAM)]
    await process(write_path, records)
    assert await purge_once(sessions, SPEC.retention_hours * 3600) == 200  # the purge's part

    verdict = await check_table(target, expected_outcome(STREAM), prefilled)

    assert verdict.startswith("verified"), verdict
    assert "2 products, 1 processed ids" in verdict
    assert "300 of 500 prefilled ids (the purge deleted 200 expired ones)" in verdict

    async with engine.begin() as connection:  # a prefilled product lost: no longer verified
        await connection.execute(
            text("DELETE FROM products WHERE id = :id"), {"id": 2 + PRODUCT_BASE}
        )
    verdict = await check_table(target, expected_outcome(STREAM), prefilled)
    assert verdict.startswith("TABLE DOES NOT MATCH"), verdict
    assert "999 prefilled products left of 1,000" in verdict
