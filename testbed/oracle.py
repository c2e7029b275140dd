"""The expected outcome of a stream, from the independent model (testbed/model.py),
and the actual table to compare it with. Nothing here imports `service`: the code under test
never decides what the tests expect of it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from testbed import model
from testbed.model import Product

__all__ = ["Expected", "Product", "diff", "expected_outcome", "table"]


@dataclass
class Expected:
    products: dict[int, Product]
    dead_letter_values: Counter[tuple[bytes, str]]  # (value, reason) -> count
    processed_ids: set[UUID]  # ids of applied stock.adjusted events: processed_events' rows
    # Per input record: its fate (applied, stale, duplicate) or its dead-letter reason.
    fates: list[str]

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letter_values.values())

    def letters(self) -> dict[int, str]:
        """Index of each input record that is dead-lettered -> its reason."""
        return dict(model.Expected(self.products, self.processed_ids, self.fates).letters())


def expected_outcome(
    records: Sequence[Sequence[Any]], max_record_bytes: int = model.DEFAULT_MAX_RECORD_BYTES
) -> Expected:
    """The model's verdict on records published in this order: (key, value) pairs,
    (key, value, headers) or labelled records (testbed.events.Rec)."""
    result = model.expect(records, max_record_bytes)
    dead: Counter[tuple[bytes, str]] = Counter()
    for index, reason in result.letters():
        dead[(records[index][1] or b"", reason)] += 1
    return Expected(result.products, dead, result.processed_ids, result.fates)


async def table(engine: AsyncEngine) -> dict[int, Product]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, name, description, price, quantity, version, deleted_at FROM products")
        )
        return {row.id: Product(**row._mapping) for row in rows}


def diff(expected: dict[int, Product], actual: dict[int, Product], limit: int = 10) -> list[str]:
    problems = []
    for pid in sorted(expected.keys() | actual.keys()):
        if expected.get(pid) != actual.get(pid):
            problems.append(f"product {pid}: expected {expected.get(pid)}, got {actual.get(pid)}")
    return problems[:limit] + (
        [f"... {len(problems) - limit} more"] if len(problems) > limit else []
    )
