"""The expected outcome of a stream, computed with the domain's own pure functions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.decoding import Unusable, decode
from service.domain import Product, Rejected, fold
from service.records import SimpleRecord


@dataclass
class Expected:
    products: dict[int, Product]
    dead_letter_values: Counter[tuple[bytes, str]]  # (value, reason) -> count
    processed_ids: set[UUID]

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letter_values.values())


def expected_outcome(records: Sequence[tuple[bytes | None, bytes | None]]) -> Expected:
    """Fold the records in publish order (each product's events share a partition, so this
    is partition order for every product)."""
    dead: Counter[tuple[bytes, str]] = Counter()
    events = []
    for i, (key, value) in enumerate(records):
        item = decode(SimpleRecord("oracle", 0, i, key, value))
        if isinstance(item, Unusable):
            dead[(value or b"", item.reason.value)] += 1
        else:
            events.append((value or b"", item))
    result = fold({}, [e for _, e in events])
    for (value, _), outcome in zip(events, result.outcomes, strict=True):
        if isinstance(outcome, Rejected):
            dead[(value, outcome.reason.value)] += 1
    return Expected(result.changed, dead, set(result.processed_ids))


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
