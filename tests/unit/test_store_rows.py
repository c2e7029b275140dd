"""store.load_products builds each ProductState by column name, not by column position."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from service import store
from service.domain import ProductState


class _Rows:
    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self._columns, self._rows = columns, rows

    def keys(self) -> list[str]:
        return self._columns

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)


class _Session:
    def __init__(self, rows: _Rows) -> None:
        self.rows = rows
        self.params: list[dict[str, Any]] = []

    async def execute(self, statement: Any, params: dict[str, Any]) -> _Rows:
        self.params.append(params)
        return self.rows


async def test_a_select_in_another_column_order_gives_the_same_states() -> None:
    deleted = datetime(2026, 1, 2, tzinfo=UTC)
    columns = ["xmin", "deleted_at", "version", "quantity", "price", "description", "name", "id"]
    rows = [
        (901, None, 3, 40, Decimal("24.90"), "Dark roast", "Espresso beans", 1),
        (902, deleted, 2, 0, Decimal("3.20"), None, "Filters", 3),
    ]
    session = _Session(_Rows(columns, rows))

    states, versions = await store.load_products(session, {3, 1})  # type: ignore[arg-type]

    assert states == {
        1: ProductState(1, "Espresso beans", "Dark roast", Decimal("24.90"), 40, 3, None),
        3: ProductState(3, "Filters", None, Decimal("3.20"), 0, 2, deleted),
    }
    assert versions == {1: 901, 3: 902}  # each row's xmin, for the compare-and-set write
    assert session.params == [{"ids": [1, 3]}]
