"""How one product event changes one product: pure functions, no I/O.

`apply_event` decides the outcome of a single event against a product's current state;
`fold` runs a whole batch of events, in order, over the states it touches. The write
path (service/write_path) stores what `fold` returns. The tests judge these functions by an
independent model of the contract (testbed/model.py), which imports nothing from here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple
from uuid import UUID

from service.core.contract import MAX_QUANTITY, ProductDeleted, ProductUpserted, StockAdjusted

Event = ProductUpserted | ProductDeleted | StockAdjusted


class ProductState(NamedTuple):
    """A product as the table stores it (timestamps kept by the database aside).

    Immutable; a NamedTuple rather than a frozen dataclass because the write path builds
    one per applied event and per row read, and a frozen dataclass is 3-4x slower to build.
    """

    id: int
    name: str
    description: str | None
    price: Decimal
    quantity: int
    version: int
    deleted_at: datetime | None = None


class Reason(enum.StrEnum):
    """Why a record was dead-lettered: the `error.reason` header."""

    INVALID_JSON = "invalid_json"
    INVALID_EVENT = "invalid_event"
    UNKNOWN_PRODUCT = "unknown_product"
    INSUFFICIENT_STOCK = "insufficient_stock"
    QUANTITY_OVERFLOW = "quantity_overflow"
    UNSTORABLE = "unstorable"  # valid, but the database refused it
    RECORD_TOO_LARGE = "record_too_large"  # over MAX_RECORD_BYTES: never parsed
    # Its contract-version header names a version this service does not read: never parsed.
    UNKNOWN_CONTRACT_VERSION = "unknown_contract_version"


class Applied(NamedTuple):
    product: ProductState


class Stale(NamedTuple):
    current_version: int


class Rejected(NamedTuple):
    reason: Reason
    message: str


Outcome = Applied | Stale | Rejected


def apply_event(current: ProductState | None, event: Event) -> Outcome:
    """Return what `event` does to the product whose current state is `current`."""
    # Dispatch on the discriminator: cheaper than isinstance on pydantic models (ABCs).
    if event.event_type == "stock.adjusted":
        return _adjust(current, event)
    if event.event_type == "product.upserted":
        return _upsert(current, event)
    return _delete(current, event)


def _upsert(current: ProductState | None, event: ProductUpserted) -> Outcome:
    data = event.data
    if current is None:
        return Applied(
            ProductState(
                id=event.product_id,
                name=data.name,
                description=data.description,
                price=data.price,
                quantity=data.quantity if data.quantity is not None else 0,
                version=event.version,
            )
        )
    if event.version <= current.version:
        return Stale(current.version)
    return Applied(
        ProductState(
            current.id,
            data.name,
            data.description,
            data.price,
            data.quantity if data.quantity is not None else current.quantity,
            event.version,
            None,
        )
    )


def _delete(current: ProductState | None, event: ProductDeleted) -> Outcome:
    if current is None:
        return Rejected(
            Reason.UNKNOWN_PRODUCT,
            f"product {event.product_id} does not exist, so it cannot be deleted; "
            "publish its product.upserted event first",
        )
    if event.version <= current.version:
        return Stale(current.version)
    deleted_at = current.deleted_at if current.deleted_at is not None else event.occurred_at
    return Applied(
        ProductState(
            current.id,
            current.name,
            current.description,
            current.price,
            current.quantity,
            event.version,
            deleted_at,
        )
    )


def _adjust(current: ProductState | None, event: StockAdjusted) -> Outcome:
    if current is None or current.deleted_at is not None:
        state = "is deleted" if current is not None else "does not exist"
        return Rejected(
            Reason.UNKNOWN_PRODUCT,
            f"product {event.product_id} {state}; stock can only be adjusted for a live "
            "product (publish product.upserted first)",
        )
    quantity = current.quantity + event.data.delta
    if quantity < 0:
        return Rejected(
            Reason.INSUFFICIENT_STOCK,
            f"product {event.product_id} has quantity {current.quantity}; delta "
            f"{event.data.delta} would make it {quantity}",
        )
    if quantity > MAX_QUANTITY:
        return Rejected(
            Reason.QUANTITY_OVERFLOW,
            f"product {event.product_id} has quantity {current.quantity}; delta "
            f"{event.data.delta} would exceed the maximum {MAX_QUANTITY}",
        )
    # Built field by field: a NamedTuple built directly is the cheapest on this hot path.
    return Applied(
        ProductState(
            current.id,
            current.name,
            current.description,
            current.price,
            quantity,
            current.version,
            current.deleted_at,
        )
    )


def needs_claim(event: Event) -> bool:
    """True if the event's id must be recorded (claimed) for the event to apply only once.

    Only `stock.adjusted`: a delta applied twice counts twice, and nothing in the product
    tells a repeat from a new delta. `product.upserted` and `product.deleted` carry a version
    and apply only if it is greater than the stored one; stored versions never go back (rows
    are never removed, adjustments keep the version). So a repeat of a versioned event (an
    upstream retry, a replayed dead letter) is `Stale` by its version alone, however late it
    comes, even after its id would have left the claims' retention window.
    """
    return event.event_type == "stock.adjusted"


@dataclass(slots=True)
class FoldResult:
    """What a batch did: the final state of every product it changed, and each event's
    outcome (the ids it processed are those of its applied `stock.adjusted` events:
    claims.kept_ids)."""

    changed: dict[int, ProductState] = field(default_factory=dict)
    outcomes: list[Outcome | None] = field(default_factory=list)  # None: duplicate event_id


def fold(
    states: Mapping[int, ProductState],
    events: Iterable[Event],
    already_processed: Set[UUID] = frozenset(),
) -> FoldResult:
    """Apply `events` in order over `states`.

    An event that needs a claim (`needs_claim`: a `stock.adjusted`) whose `event_id` is in
    `already_processed`, or was applied earlier in the same batch, is a duplicate: it changes
    nothing and its outcome is None. A rejected event does not make its id processed, so a
    later event with that id (an upstream retry, or a dead letter replayed once its cause is
    fixed) is decided afresh, whether it comes in the same batch or a later one. Versioned
    events are decided by their version alone, never by their id: a repeat is `Stale`, the
    same whether it comes in the same batch or a later one, so the outcome never depends on
    where a batch ends.
    """
    result = FoldResult()
    current = dict(states)
    changed = result.changed
    outcomes = result.outcomes
    seen: set[UUID] = set(already_processed)
    for event in events:
        event_id = event.event_id
        claimed = needs_claim(event)
        if claimed and event_id in seen:
            outcomes.append(None)
            continue
        outcome = apply_event(current.get(event.product_id), event)
        if type(outcome) is Applied:
            current[event.product_id] = changed[event.product_id] = outcome.product
        if claimed and type(outcome) is not Rejected:
            seen.add(event_id)
        outcomes.append(outcome)
    return result
