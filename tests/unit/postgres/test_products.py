"""products.load_products builds each ProductState by column name, not by column position;
products.save_products sends the rows as JSON objects named for the statement's columns."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from service.core.domain import ProductState
from service.core.failures import Conflict, UnstorableRow
from service.postgres import products
from service.write_path.retry import is_permanent


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

    states, versions = await products.load_products(session, {3, 1})  # type: ignore[arg-type]

    assert states == {
        1: ProductState(1, "Espresso beans", "Dark roast", Decimal("24.90"), 40, 3, None),
        3: ProductState(3, "Filters", None, Decimal("3.20"), 0, 2, deleted),
    }
    assert versions == {1: 901, 3: 902}  # each row's xmin, for the compare-and-set write
    assert session.params == [{"ids": [1, 3]}]


class _Written:
    rowcount = 2


class _WritingSession:
    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []

    async def execute(self, statement: Any, params: dict[str, Any]) -> _Written:
        self.params.append(params)
        return _Written()


async def test_saved_rows_go_as_json_objects_named_for_the_recordset_columns() -> None:
    deleted = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    kept = ProductState(7, 'Grinder "Pro" \u00e9\U0001f600', "two\nlines", Decimal("1E+2"), 0, 9)
    gone = ProductState(8, "Filters", None, Decimal("3.20"), 2_147_483_647, 2**63 - 1, deleted)
    session = _WritingSession()

    await products.save_products(session, [gone, kept], {7: 4_000_000_000, 8: 12})  # type: ignore[arg-type]

    (params,) = session.params
    rows = json.loads(params["rows"])
    assert rows == [
        {
            "id": 7,
            "name": 'Grinder "Pro" \u00e9\U0001f600',
            "description": "two\nlines",
            "price": "1E+2",
            "quantity": 0,
            "version": 9,
            "deleted_at": None,
            "read_xmin": 4_000_000_000,
        },
        {
            "id": 8,
            "name": "Filters",
            "description": None,
            "price": "3.20",
            "quantity": 2_147_483_647,
            "version": 2**63 - 1,
            "deleted_at": "2026-01-02T03:04:05.678901+05:30",
            "read_xmin": 12,
        },
    ]
    # every key is a column the UPDATE's json_to_recordset defines, and the reverse
    defined = re.search(r"AS t\((.*?)\)\s*WHERE", str(products._UPDATE_PRODUCTS), re.S)
    assert defined is not None
    assert {part.split()[0] for part in defined.group(1).split(",")} == set(rows[0])


async def test_a_value_json_cannot_carry_is_a_permanent_refusal_that_names_it() -> None:
    odd = ProductState(1, "x", None, object(), 0, 1)  # type: ignore[arg-type]

    with pytest.raises(
        UnstorableRow, match="Unable to serialize unknown type: <class 'object'>"
    ) as caught:
        await products.save_products(_WritingSession(), [odd], {})  # type: ignore[arg-type]

    assert is_permanent(caught.value)  # isolated and dead-lettered, never retried


def test_a_row_holds_every_field_of_the_state_by_its_name() -> None:
    state = ProductState(5, "Mug", "blue", Decimal("7.50"), 3, 4, datetime(2026, 1, 1, tzinfo=UTC))

    assert products._row(state) == state._asdict()


class _Counted:
    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class _RacedSession:
    """Writes `rowcount` rows whatever it is asked: the rest were raced by another transaction."""

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount

    async def execute(self, statement: Any, params: dict[str, Any]) -> _Counted:
        return _Counted(self.rowcount)


@pytest.mark.parametrize(("read", "what"), [({}, "inserted"), ({1: 7, 2: 7, 3: 7}, "changed")])
async def test_a_raced_write_is_a_conflict_that_says_how_many_rows_and_why(
    read: dict[int, int], what: str
) -> None:
    states = [ProductState(i, "x", None, Decimal("1.00"), 0, 1) for i in (1, 2, 3)]

    with pytest.raises(Conflict) as caught:
        await products.save_products(_RacedSession(1), states, read)  # type: ignore[arg-type]

    assert str(caught.value) == (
        f"2 of 3 products were {what} by another transaction since this batch read them "
        "(a product in two partitions); retrying the batch"
    )
    assert not is_permanent(caught.value)
