"""The SQL of the products table: the write path's set-based reads and writes of one batch
(in its transaction), and the operator's listing (`inventory-sink show`).

The write path's statements take arrays or one JSON parameter (one round trip whatever the
batch size) and keep a constant text, so asyncpg prepares each once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from decimal import Decimal
from operator import itemgetter
from typing import NamedTuple

import pydantic_core
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.domain import ProductState
from service.core.failures import Conflict, UnstorableRow

# No row locks: the partition's row in consumer_offsets already serialises the writers of a
# product (its events share a key, so a partition). `xmin` (the id of the transaction that wrote
# the row version read) lets the writes below check that nobody changed the row since.
_LOAD_PRODUCTS = text(
    """
    SELECT id, name, description, price, quantity, version, deleted_at, xmin
    FROM products WHERE id = ANY(CAST(:ids AS bigint[]))
    """
)

# The rows to write travel as one JSON parameter, serialised by pydantic-core (Rust) and read
# by PostgreSQL's json_to_recordset. Seven typed arrays cost the consumer twice the CPU: asyncpg
# encodes every element in Python-facing code (a Decimal, a datetime, an ABC check each).
# Measured with bench/README.md's profile: 13% of the consumer's CPU went to these two
# statements' parameters before.

# Products the batch read: overwritten only if still the version read (compare-and-set on
# xmin). Under READ COMMITTED an UPDATE that meets a row changed by a transaction committed
# meanwhile re-checks its condition on the newest version: a changed row is left out, and the
# row count shows it.
_UPDATE_PRODUCTS = text(
    """
    UPDATE products AS p SET
        name = t.name,
        description = t.description,
        price = t.price,
        quantity = t.quantity,
        version = t.version,
        deleted_at = t.deleted_at,
        updated_at = now()
    FROM json_to_recordset(CAST(:rows AS json)) AS t(
        id bigint, name varchar, description text, price numeric, quantity integer,
        version bigint, deleted_at timestamptz, read_xmin xid
    )
    WHERE p.id = t.id AND p.xmin = t.read_xmin
    """
)

# Products the batch found absent: inserted only where still absent (a concurrent transaction
# may have inserted one meanwhile; the insert waits for it and then leaves the row out).
_INSERT_PRODUCTS = text(
    """
    INSERT INTO products (id, name, description, price, quantity, version, deleted_at)
    SELECT t.id, t.name, t.description, t.price, t.quantity, t.version, t.deleted_at
    FROM json_to_recordset(CAST(:rows AS json)) AS t(
        id bigint, name varchar, description text, price numeric, quantity integer,
        version bigint, deleted_at timestamptz
    )
    ON CONFLICT (id) DO NOTHING
    """
)

# What `inventory-sink show` prints: every product, deleted ones flagged.
_LIST_PRODUCTS = text(
    """
    SELECT id, name, price, quantity, version, deleted_at IS NOT NULL
    FROM products WHERE :include_deleted OR deleted_at IS NULL ORDER BY id LIMIT :limit
    """
)
_COUNT_PRODUCTS = text("SELECT count(*) FROM products WHERE :include_deleted OR deleted_at IS NULL")


# The version of each product row read (its xmin): what save_products checks it still is.
ReadVersions = dict[int, int]


async def load_products(
    session: AsyncSession, product_ids: Collection[int]
) -> tuple[dict[int, ProductState], ReadVersions]:
    """Read the current state of the given products (without locking them), and the version
    of each row read, for `save_products`."""
    if not product_ids:
        return {}, {}
    rows = await session.execute(_LOAD_PRODUCTS, {"ids": sorted(product_ids)})
    # Each field taken by its column's name, whatever the SELECT's order (one lookup per
    # statement, then plain tuple indexing: as fast as positional construction).
    columns = list(rows.keys())
    pick = itemgetter(*(columns.index(name) for name in ProductState._fields))
    version = columns.index("xmin")
    states: dict[int, ProductState] = {}
    read: ReadVersions = {}
    for row in rows:
        state = ProductState._make(pick(row))
        states[state.id] = state
        read[state.id] = row[version]
    return states, read


async def save_products(
    session: AsyncSession, products: Collection[ProductState], read: ReadVersions
) -> None:
    """Write the given product states: overwrite those read (`read` holds their versions),
    insert the others. Raises `Conflict` (the batch is then retried) if another transaction
    changed or inserted one of them since it was read."""
    if not products:
        return
    ordered = sorted(products, key=lambda p: p.id)
    inserts = [p for p in ordered if p.id not in read]
    updates = [p for p in ordered if p.id in read]
    # Inserts first: a conflicting insert waits for the other transaction's commit before this
    # transaction has overwritten anything (both sort by id, so the waits cannot cycle).
    if inserts:
        rows = _json_rows(_row(p) for p in inserts)
        result = await session.execute(_INSERT_PRODUCTS, {"rows": rows})
        _check(result, len(inserts), "inserted")
    if updates:
        rows = _json_rows(_row(p) | {"read_xmin": read[p.id]} for p in updates)
        result = await session.execute(_UPDATE_PRODUCTS, {"rows": rows})
        _check(result, len(updates), "changed")


def _row(product: ProductState) -> dict[str, object]:
    """The product's columns by name (a literal dict: a third of `_asdict()`'s cost)."""
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": product.price,
        "quantity": product.quantity,
        "version": product.version,
        "deleted_at": product.deleted_at,
    }


def _json_rows(rows: Iterable[dict[str, object]]) -> str:
    """A JSON array of row objects (Decimal as a string, datetime as RFC 3339 text), as
    json_to_recordset reads it. A value JSON cannot carry is the data's fault (permanent)."""
    try:
        return pydantic_core.to_json(list(rows)).decode()
    except pydantic_core.PydanticSerializationError as error:
        raise UnstorableRow(str(error)) from error


def _check(result: object, expected: int, what: str) -> None:
    written = int(getattr(result, "rowcount", 0) or 0)
    if written != expected:
        raise Conflict(
            f"{expected - written} of {expected} products were {what} by another transaction "
            "since this batch read them (a product in two partitions); retrying the batch"
        )


class ProductLine(NamedTuple):
    """A product as `inventory-sink show` lists it."""

    id: int
    name: str
    price: Decimal
    quantity: int
    version: int
    deleted: bool


async def list_products(
    session: AsyncSession, include_deleted: bool = True, limit: int | None = None
) -> list[ProductLine]:
    """The first `limit` products by id (None: all), deleted ones too unless told not to."""
    rows = await session.execute(
        _LIST_PRODUCTS, {"include_deleted": include_deleted, "limit": limit}
    )
    return [ProductLine._make(row) for row in rows]


async def count_products(session: AsyncSession, include_deleted: bool = True) -> int:
    """How many products `list_products` would list without a limit."""
    count = await session.scalar(_COUNT_PRODUCTS, {"include_deleted": include_deleted})
    return int(count or 0)
