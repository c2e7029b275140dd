"""Check a sink's final table against the oracle (the independent model's outcome of the stream)."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.database import table_counts
from bench.prefill import PRODUCT_BASE, Prefilled
from bench.target import Target
from testbed.oracle import Expected, Product, diff, expected_outcome, table

__all__ = ["Expected", "check_table", "expected_outcome"]

# The stream's products only: the prefilled rows are counted apart.
STREAM_PRODUCTS = text(
    "SELECT id, name, description, price, quantity, version, deleted_at FROM products "
    "WHERE id < :base"
)


async def check_table(
    target: Target, expected: Expected, prefilled: Prefilled | None = None
) -> str:
    """One line: does the products table (and processed_events) match the oracle? With a
    prefill, the stream's rows are compared and the prefilled ones counted."""
    if prefilled is not None:
        return await _check_beside_prefill(target, expected, prefilled)
    engine = create_async_engine(target.base.database_url)
    try:
        problems = diff(expected.products, await table(engine), limit=3)
    finally:
        await engine.dispose()
    counts = await table_counts(target)
    if counts["processed_events"] != len(expected.processed_ids):
        problems.append(
            f"processed_events has {counts['processed_events']:,} ids, "
            f"expected {len(expected.processed_ids):,}"
        )
    if problems:
        return "TABLE DOES NOT MATCH THE ORACLE: " + "; ".join(problems)
    return (
        f"verified: table matches the oracle ({counts['products']:,} products, "
        f"{counts['processed_events']:,} processed ids)"
    )


async def _check_beside_prefill(target: Target, expected: Expected, prefilled: Prefilled) -> str:
    spec = prefilled.spec
    engine = create_async_engine(target.base.database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(STREAM_PRODUCTS, {"base": PRODUCT_BASE})
            actual = {row.id: Product(**row._mapping) for row in rows}
    finally:
        await engine.dispose()
    problems = diff(expected.products, actual, limit=3)
    connection = await asyncpg.connect(target.dsn(), timeout=10)
    try:
        others = int(
            await connection.fetchval("SELECT count(*) FROM products WHERE id >= $1", PRODUCT_BASE)
        )
        stream_ids = int(
            await connection.fetchval(
                "SELECT count(*) FROM processed_events WHERE processed_at > $1", prefilled.ended_at
            )
        )
        kept = int(
            await connection.fetchval(
                "SELECT count(*) FROM processed_events WHERE processed_at <= $1", prefilled.ended_at
            )
        )
    finally:
        await connection.close()
    if others != spec.products:
        problems.append(f"{others:,} prefilled products left of {spec.products:,}")
    if stream_ids != len(expected.processed_ids):
        problems.append(
            f"processed_events has {stream_ids:,} ids of the stream, "
            f"expected {len(expected.processed_ids):,}"
        )
    prefilled_ids = spec.processed + spec.expired
    if not spec.processed <= kept <= prefilled_ids:
        problems.append(
            f"{kept:,} prefilled ids left: expected {spec.processed:,} within the retention "
            f"and up to {spec.expired:,} expired ones"
        )
    if problems:
        return "TABLE DOES NOT MATCH THE ORACLE: " + "; ".join(problems)
    beside = f"{others:,} prefilled products"
    if prefilled_ids:
        beside += (
            f" and {kept:,} of {prefilled_ids:,} prefilled ids (the purge deleted "
            f"{prefilled_ids - kept:,} expired ones)"
        )
    return (
        f"verified: the stream's rows match the oracle ({len(actual):,} products, "
        f"{stream_ids:,} processed ids) beside {beside}"
    )
