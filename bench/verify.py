"""Check a sink's final table against the oracle (the independent model's outcome of the stream)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine

from bench.database import table_counts
from bench.target import Target
from testbed.oracle import Expected, diff, expected_outcome, table

__all__ = ["Expected", "check_table", "expected_outcome"]


async def check_table(target: Target, expected: Expected) -> str:
    """One line: does the products table (and processed_events) match the oracle?"""
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
