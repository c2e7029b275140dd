"""Unit and property tests for the pure event-application rules (`service/core/domain.py`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.claims import kept_ids
from service.core.contract import (
    EVENT_ADAPTER,
    MAX_QUANTITY,
    ProductDeleted,
    ProductUpserted,
    StockAdjusted,
)
from service.core.domain import (
    Applied,
    Event,
    FoldResult,
    Outcome,
    ProductState,
    Reason,
    Rejected,
    Stale,
    apply_event,
    fold,
    needs_claim,
)

# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_next_id = itertools.count(1)


def new_id() -> UUID:
    return UUID(int=next(_next_id))


def upsert(
    product_id: int = 1,
    version: int = 1,
    *,
    name: str = "Widget",
    description: str | None = None,
    price: str = "9.99",
    quantity: int | None = None,
    event_id: UUID | None = None,
    occurred_at: datetime = T0,
) -> ProductUpserted:
    data: dict[str, Any] = {"name": name, "description": description, "price": price}
    if quantity is not None:
        data["quantity"] = quantity
    event = EVENT_ADAPTER.validate_python(
        {
            "event_id": event_id or new_id(),
            "event_type": "product.upserted",
            "occurred_at": occurred_at,
            "product_id": product_id,
            "version": version,
            "data": data,
        }
    )
    assert isinstance(event, ProductUpserted)
    return event


def delete(
    product_id: int = 1,
    version: int = 2,
    *,
    event_id: UUID | None = None,
    occurred_at: datetime = T0,
) -> ProductDeleted:
    event = EVENT_ADAPTER.validate_python(
        {
            "event_id": event_id or new_id(),
            "event_type": "product.deleted",
            "occurred_at": occurred_at,
            "product_id": product_id,
            "version": version,
        }
    )
    assert isinstance(event, ProductDeleted)
    return event


def adjust(
    product_id: int = 1,
    delta: int = 1,
    *,
    version: int | None = None,
    reason: str | None = None,
    event_id: UUID | None = None,
    occurred_at: datetime = T0,
) -> StockAdjusted:
    raw: dict[str, Any] = {
        "event_id": event_id or new_id(),
        "event_type": "stock.adjusted",
        "occurred_at": occurred_at,
        "product_id": product_id,
        "data": {"delta": delta, "reason": reason},
    }
    if version is not None:
        raw["version"] = version
    event = EVENT_ADAPTER.validate_python(raw)
    assert isinstance(event, StockAdjusted)
    return event


def product(
    id: int = 1,
    *,
    quantity: int = 10,
    version: int = 1,
    deleted_at: datetime | None = None,
    name: str = "Widget",
    description: str | None = "Old description",
    price: str = "9.99",
) -> ProductState:
    return ProductState(
        id=id,
        name=name,
        description=description,
        price=Decimal(price),
        quantity=quantity,
        version=version,
        deleted_at=deleted_at,
    )


def applied(outcome: Outcome | None) -> ProductState:
    assert isinstance(outcome, Applied), outcome
    return outcome.product


def rejected(outcome: Outcome | None, reason: Reason) -> str:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason is reason
    return outcome.message


# --------------------------------------------------------------------------------------
# apply_event: product.upserted
# --------------------------------------------------------------------------------------


def test_upsert_creates_a_product_with_quantity_zero_by_default() -> None:
    event = upsert(7, 3, name="Gadget", description="Shiny", price="12.50")

    created = applied(apply_event(None, event))

    assert created == ProductState(
        id=7,
        name="Gadget",
        description="Shiny",
        price=Decimal("12.50"),
        quantity=0,
        version=3,
        deleted_at=None,
    )
    assert created.deleted_at is None


@pytest.mark.parametrize("quantity", [0, 1, 25, MAX_QUANTITY])
def test_upsert_creates_a_product_with_the_given_quantity(quantity: int) -> None:
    created = applied(apply_event(None, upsert(quantity=quantity)))

    assert created.quantity == quantity


def test_upsert_with_higher_version_replaces_catalog_fields_and_keeps_quantity() -> None:
    current = product(quantity=8, version=2, name="Old", description="Old text", price="1.00")

    updated = applied(apply_event(current, upsert(1, 3, name="New", price="2.00")))

    assert updated == ProductState(
        id=1,
        name="New",
        description=None,  # full replacement: an omitted description clears the old one
        price=Decimal("2.00"),
        quantity=8,
        version=3,
        deleted_at=None,
    )


@pytest.mark.parametrize("quantity", [0, 3, 100])
def test_upsert_with_higher_version_sets_the_given_quantity(quantity: int) -> None:
    current = product(quantity=8, version=2)

    updated = applied(apply_event(current, upsert(1, 5, quantity=quantity)))

    assert updated.quantity == quantity
    assert updated.version == 5


@pytest.mark.parametrize(("current_version", "event_version"), [(3, 3), (3, 2), (3, 1), (6, 5)])
def test_upsert_with_equal_or_lower_version_is_stale(
    current_version: int, event_version: int
) -> None:
    current = product(version=current_version)

    outcome = apply_event(current, upsert(1, event_version, name="Ignored", quantity=1))

    assert outcome == Stale(current_version)


def test_upsert_with_higher_version_undeletes_a_deleted_product() -> None:
    current = product(quantity=4, version=2, deleted_at=T0 - timedelta(days=1))

    revived = applied(apply_event(current, upsert(1, 3, name="Back", price="3.00")))

    assert revived.deleted_at is None
    assert revived.deleted_at is None
    assert (revived.name, revived.price, revived.quantity, revived.version) == (
        "Back",
        Decimal("3.00"),
        4,
        3,
    )


@pytest.mark.parametrize("event_version", [1, 2])
def test_stale_upsert_cannot_bring_back_a_deleted_product(event_version: int) -> None:
    current = product(version=2, deleted_at=T0)

    assert apply_event(current, upsert(1, event_version)) == Stale(2)


# --------------------------------------------------------------------------------------
# apply_event: product.deleted
# --------------------------------------------------------------------------------------


def test_delete_of_unknown_product_is_rejected() -> None:
    message = rejected(apply_event(None, delete(77, 1)), Reason.UNKNOWN_PRODUCT)

    assert "77" in message


def test_delete_with_higher_version_marks_the_product_deleted() -> None:
    current = product(quantity=6, version=2, name="Widget", price="4.20")
    when = T0 + timedelta(hours=5)

    gone = applied(apply_event(current, delete(1, 3, occurred_at=when)))

    assert gone == current._replace(version=3, deleted_at=when)
    assert gone.deleted_at is not None
    assert gone.quantity == 6


@pytest.mark.parametrize(("current_version", "event_version"), [(3, 3), (3, 2), (3, 1)])
def test_delete_with_equal_or_lower_version_is_stale(
    current_version: int, event_version: int
) -> None:
    current = product(version=current_version)

    assert apply_event(current, delete(1, event_version)) == Stale(current_version)


def test_deleting_a_deleted_product_again_keeps_the_original_deleted_at() -> None:
    first_deleted = T0 - timedelta(days=3)
    current = product(version=2, deleted_at=first_deleted)

    again = applied(apply_event(current, delete(1, 4, occurred_at=T0)))

    assert again.deleted_at == first_deleted
    assert again.version == 4


def test_stale_delete_of_a_deleted_product_is_stale() -> None:
    current = product(version=4, deleted_at=T0)

    assert apply_event(current, delete(1, 3)) == Stale(4)


# --------------------------------------------------------------------------------------
# apply_event: stock.adjusted
# --------------------------------------------------------------------------------------


def test_stock_adjustment_of_unknown_product_is_rejected() -> None:
    message = rejected(apply_event(None, adjust(55, 3)), Reason.UNKNOWN_PRODUCT)

    assert "55" in message
    assert "does not exist" in message


def test_stock_adjustment_of_deleted_product_is_rejected() -> None:
    current = product(quantity=10, deleted_at=T0)

    message = rejected(apply_event(current, adjust(1, 3)), Reason.UNKNOWN_PRODUCT)

    assert "is deleted" in message


@pytest.mark.parametrize(
    ("quantity", "delta", "expected"),
    [
        (10, 5, 15),
        (10, -4, 6),
        (0, 1, 1),
        (10, -10, 0),
        (1, -1, 0),
        (0, MAX_QUANTITY, MAX_QUANTITY),
    ],
)
def test_stock_adjustment_changes_only_the_quantity(
    quantity: int, delta: int, expected: int
) -> None:
    current = product(quantity=quantity, version=3)

    adjusted = applied(apply_event(current, adjust(1, delta)))

    assert adjusted == current._replace(quantity=expected)


@pytest.mark.parametrize(("quantity", "delta"), [(0, -1), (5, -6), (10, -20), (0, -MAX_QUANTITY)])
def test_stock_adjustment_below_zero_is_insufficient_stock(quantity: int, delta: int) -> None:
    current = product(quantity=quantity)

    message = rejected(apply_event(current, adjust(1, delta)), Reason.INSUFFICIENT_STOCK)

    assert str(quantity + delta) in message


@pytest.mark.parametrize(
    ("quantity", "delta"), [(MAX_QUANTITY, 1), (MAX_QUANTITY - 1, 2), (1, MAX_QUANTITY)]
)
def test_stock_adjustment_above_max_is_quantity_overflow(quantity: int, delta: int) -> None:
    current = product(quantity=quantity)

    message = rejected(apply_event(current, adjust(1, delta)), Reason.QUANTITY_OVERFLOW)

    assert str(MAX_QUANTITY) in message


@pytest.mark.parametrize("event_version", [None, 1, 3, 4, 100])
def test_stock_adjustment_leaves_the_version_alone(event_version: int | None) -> None:
    current = product(quantity=5, version=3)

    adjusted = applied(apply_event(current, adjust(1, 2, version=event_version)))

    assert adjusted.version == 3
    assert adjusted.quantity == 7


# --------------------------------------------------------------------------------------
# fold
# --------------------------------------------------------------------------------------


def test_fold_of_an_empty_batch_changes_nothing() -> None:
    assert fold({1: product()}, []) == FoldResult(changed={}, outcomes=[])


def test_fold_applies_events_in_order_and_returns_final_states() -> None:
    events = [upsert(1, 1, quantity=5), adjust(1, 3), adjust(1, -2), upsert(1, 2, name="Renamed")]

    result = fold({}, events)

    assert [type(outcome) for outcome in result.outcomes] == [Applied] * 4
    assert result.changed == {
        1: ProductState(
            id=1,
            name="Renamed",
            description=None,
            price=Decimal("9.99"),
            quantity=6,
            version=2,
        )
    }
    assert kept_ids(events, result.outcomes) == [events[1].event_id, events[2].event_id]


def test_fold_uses_states_produced_earlier_in_the_batch() -> None:
    events = [adjust(1, 1), upsert(1, 1), adjust(1, 4), delete(1, 2), adjust(1, 1)]

    result = fold({}, events)

    rejected(result.outcomes[0], Reason.UNKNOWN_PRODUCT)
    applied(result.outcomes[1])
    assert applied(result.outcomes[2]).quantity == 4
    assert applied(result.outcomes[3]).deleted_at is not None
    rejected(result.outcomes[4], Reason.UNKNOWN_PRODUCT)
    assert result.changed[1].quantity == 4
    assert result.changed[1].deleted_at == T0


def test_fold_keeps_products_independent() -> None:
    states = {1: product(1, quantity=10), 2: product(2, quantity=20)}

    result = fold(states, [adjust(1, -1), adjust(2, 5), adjust(1, -1)])

    assert result.changed == {1: product(1, quantity=8), 2: product(2, quantity=25)}


def test_fold_duplicate_event_id_in_batch_is_ignored() -> None:
    first = adjust(1, 5)
    events = [first, first, first]

    result = fold({1: product(quantity=10)}, events)

    assert applied(result.outcomes[0]).quantity == 15
    assert result.outcomes[1:] == [None, None]
    assert result.changed == {1: product(quantity=15)}
    assert kept_ids(events, result.outcomes) == [first.event_id]


def test_fold_duplicate_adjustment_id_with_different_content_is_still_a_duplicate() -> None:
    event_id = new_id()
    events = [adjust(1, 5, event_id=event_id), adjust(1, 7, event_id=event_id)]

    result = fold({1: product(quantity=10)}, events)

    assert result.outcomes[1] is None
    assert result.changed == {1: product(quantity=15)}
    assert kept_ids(events, result.outcomes) == [event_id]


def test_only_stock_adjustments_need_a_claim() -> None:
    assert needs_claim(adjust(1, 1))
    assert needs_claim(adjust(1, 1, version=3))  # a version given is ignored, not a guard
    assert not needs_claim(upsert(1, 1))
    assert not needs_claim(delete(1, 2))


def test_fold_decides_versioned_events_by_version_not_by_id() -> None:
    """An upsert or delete repeated in the same batch, or whose id is already processed, is
    stale by its version (as it would be in a later batch, where its id is not claimed); an
    upsert that shares an adjustment's id is its own event and applies by its version."""
    event_id = new_id()
    again = upsert(1, 2, quantity=50)
    gone = delete(1, 3)
    events = [
        adjust(1, 5, event_id=event_id),
        upsert(1, 9, name="Other", event_id=event_id),
        again,
        again,
        gone,
        gone,
    ]

    result = fold({1: product(quantity=10)}, events, frozenset({again.event_id, gone.event_id}))

    assert applied(result.outcomes[0]).quantity == 15
    assert applied(result.outcomes[1]).name == "Other"
    assert result.outcomes[2:] == [Stale(9)] * 4
    assert result.changed == {1: product(quantity=15, version=9, name="Other", description=None)}
    assert kept_ids(events, result.outcomes) == [event_id]


def test_fold_decides_a_rejected_event_afresh_when_its_id_comes_again() -> None:
    """A rejected event leaves its id unprocessed: the copy after the upsert applies (as it
    would in a later batch, e.g. a replayed dead letter), and further copies are duplicates."""
    event_id = new_id()
    again = adjust(1, 1, event_id=event_id)
    events = [again, upsert(1, 1), again, again]

    result = fold({}, events)

    rejected(result.outcomes[0], Reason.UNKNOWN_PRODUCT)
    assert applied(result.outcomes[2]).quantity == 1
    assert result.outcomes[3] is None
    assert result.changed[1].quantity == 1
    assert kept_ids(events, result.outcomes) == [event_id]


def test_fold_rejects_each_copy_of_an_event_while_its_cause_remains() -> None:
    bad = adjust(7, 1)
    events = [bad, bad]

    result = fold({}, events)

    rejected(result.outcomes[0], Reason.UNKNOWN_PRODUCT)
    rejected(result.outcomes[1], Reason.UNKNOWN_PRODUCT)
    assert kept_ids(events, result.outcomes) == []


def test_fold_skips_already_processed_events() -> None:
    done = adjust(1, 100)
    fresh = adjust(1, 1)

    events = [done, fresh, done]

    result = fold({1: product(quantity=10)}, events, frozenset({done.event_id}))

    assert result.outcomes[0] is None
    assert applied(result.outcomes[1]).quantity == 11
    assert result.outcomes[2] is None
    assert kept_ids(events, result.outcomes) == [fresh.event_id]
    assert result.changed == {1: product(quantity=11)}


def test_fold_with_only_already_processed_events_changes_nothing() -> None:
    events = [upsert(1, 1), adjust(1, 2), delete(1, 2)]

    result = fold({1: product(version=2)}, events, {event.event_id for event in events})

    assert result == FoldResult(changed={}, outcomes=[Stale(2), None, Stale(2)])


def test_fold_kept_ids_are_the_applied_adjustments_once_each() -> None:
    stale = upsert(1, 1)
    bad = adjust(2, 1)
    good = adjust(1, 1)
    events = [stale, bad, good, bad, stale, good]

    result = fold({1: product(version=3)}, events)

    assert result.outcomes[0] == Stale(3)
    rejected(result.outcomes[1], Reason.UNKNOWN_PRODUCT)
    applied(result.outcomes[2])
    rejected(result.outcomes[3], Reason.UNKNOWN_PRODUCT)
    assert result.outcomes[4:] == [Stale(3), None]
    assert kept_ids(events, result.outcomes) == [good.event_id]


def test_fold_changed_holds_only_products_actually_changed() -> None:
    states = {
        1: product(1, version=5),  # only a stale event
        2: product(2, quantity=0),  # only a rejected event
        3: product(3),  # no events at all
        4: product(4, quantity=1),  # changed
    }
    events = [upsert(1, 2), adjust(2, -1), adjust(4, 1), delete(9, 1)]

    result = fold(states, events)

    assert result.changed == {4: product(4, quantity=2)}


def test_fold_does_not_mutate_the_given_states() -> None:
    states = {1: product(quantity=10)}

    fold(states, [adjust(1, 1), upsert(2, 1), delete(1, 2)])

    assert states == {1: product(quantity=10)}


def test_fold_accepts_any_iterable_of_events() -> None:
    events = [upsert(1, 1), adjust(1, 3)]

    result = fold({}, (event for event in events))

    assert result.changed[1].quantity == 3
    assert kept_ids(events, result.outcomes) == [events[1].event_id]


def test_fold_stale_upsert_after_delete_leaves_the_product_deleted() -> None:
    when = T0 + timedelta(minutes=1)
    events = [delete(1, 3, occurred_at=when), upsert(1, 2, name="Zombie")]

    result = fold({1: product(version=2)}, events)

    assert result.outcomes[1] == Stale(3)
    assert result.changed[1].deleted_at == when
    assert result.changed[1].name == "Widget"


def test_fold_later_upsert_undeletes_and_second_delete_keeps_first_deleted_at() -> None:
    first = T0 + timedelta(minutes=1)
    events = [
        delete(1, 2, occurred_at=first),
        delete(1, 3, occurred_at=first + timedelta(minutes=1)),
        upsert(1, 4, name="Back"),
    ]

    result = fold({1: product(version=1, quantity=3)}, events)

    assert applied(result.outcomes[1]).deleted_at == first
    assert result.changed[1] == product(
        version=4, quantity=3, name="Back", description=None
    )._replace(deleted_at=None)


# --------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------

PRODUCT_IDS = st.integers(min_value=1, max_value=5)
VERSIONS = st.integers(min_value=1, max_value=6)
DELTAS = st.integers(min_value=-20, max_value=20).filter(lambda delta: delta != 0)
QUANTITIES = st.integers(min_value=0, max_value=30)


@st.composite
def products(draw: st.DrawFn, product_id: int) -> ProductState:
    deleted = draw(st.booleans())
    return ProductState(
        id=product_id,
        name=draw(st.sampled_from(["Alpha", "Beta"])),
        description=draw(st.none() | st.just("desc")),
        price=Decimal(draw(st.sampled_from(["0", "1.50", "9.99"]))),
        quantity=draw(QUANTITIES),
        version=draw(VERSIONS),
        deleted_at=T0 - timedelta(days=1) if deleted else None,
    )


@st.composite
def initial_states(draw: st.DrawFn) -> dict[int, ProductState]:
    ids = draw(st.sets(PRODUCT_IDS, max_size=5))
    return {product_id: draw(products(product_id)) for product_id in sorted(ids)}


@st.composite
def new_events(draw: st.DrawFn, event_id: UUID, occurred_at: datetime) -> Event:
    kind = draw(st.sampled_from(["upsert", "delete", "adjust"]))
    product_id = draw(PRODUCT_IDS)
    if kind == "upsert":
        return upsert(
            product_id,
            draw(VERSIONS),
            name=draw(st.sampled_from(["Alpha", "Beta", "Gamma"])),
            description=draw(st.none() | st.just("desc")),
            price=draw(st.sampled_from(["0", "1.50", "9.99"])),
            quantity=draw(st.none() | QUANTITIES),
            event_id=event_id,
            occurred_at=occurred_at,
        )
    if kind == "delete":
        return delete(product_id, draw(VERSIONS), event_id=event_id, occurred_at=occurred_at)
    return adjust(
        product_id,
        draw(DELTAS),
        version=draw(st.none() | VERSIONS),
        event_id=event_id,
        occurred_at=occurred_at,
    )


@st.composite
def batches(draw: st.DrawFn) -> list[Event]:
    """Random event sequences; some events are redeliveries or reuse an earlier event_id."""
    events: list[Event] = []
    for index in range(draw(st.integers(min_value=0, max_value=30))):
        occurred_at = T0 + timedelta(seconds=index)
        choice = draw(st.sampled_from(["new"] * 6 + ["redeliver", "reuse-id"]))
        if events and choice == "redeliver":
            events.append(draw(st.sampled_from(events)))
        elif events and choice == "reuse-id":
            event_id = draw(st.sampled_from(events)).event_id
            events.append(draw(new_events(event_id, occurred_at)))
        else:
            events.append(draw(new_events(UUID(int=index + 1), occurred_at)))
    return events


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[int, ProductState], list[Event], frozenset[UUID]]:
    """Initial states, a batch, and some of its event ids already processed earlier."""
    states = draw(initial_states())
    events = draw(batches())
    ids = sorted({event.event_id for event in events})
    done = draw(st.sets(st.sampled_from(ids), max_size=3)) if ids else set()
    return states, events, frozenset(done)


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def fold_in_chunks(
    states: dict[int, ProductState],
    chunks: Sequence[Sequence[Event]],
    already_processed: frozenset[UUID],
) -> tuple[dict[int, ProductState], FoldResult]:
    """Fold each chunk as its own batch, carrying states and processed ids forward."""
    current = dict(states)
    processed = set(already_processed)
    combined = FoldResult()
    for chunk in chunks:
        result = fold(current, chunk, frozenset(processed))
        current.update(result.changed)
        processed.update(kept_ids(chunk, result.outcomes))
        combined.changed.update(result.changed)
        combined.outcomes.extend(result.outcomes)
    return current, combined


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_property_folding_one_by_one_equals_folding_the_batch(
    scenario: tuple[dict[int, ProductState], list[Event], frozenset[UUID]],
) -> None:
    states, events, done = scenario

    whole = fold(states, events, done)
    final, stepwise = fold_in_chunks(states, [[event] for event in events], done)

    assert stepwise.outcomes == whole.outcomes
    assert stepwise.changed == whole.changed
    assert final == {**states, **whole.changed}


@PROPERTY_SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_property_splitting_a_batch_anywhere_gives_the_same_result(
    scenario: tuple[dict[int, ProductState], list[Event], frozenset[UUID]], data: st.DataObject
) -> None:
    states, events, done = scenario
    cuts = data.draw(st.sets(st.integers(min_value=0, max_value=len(events))), label="cuts")
    bounds = [0, *sorted(cuts), len(events)]
    chunks = [events[start:end] for start, end in itertools.pairwise(bounds)]

    whole = fold(states, events, done)
    final, chunked = fold_in_chunks(states, chunks, done)

    assert chunked.outcomes == whole.outcomes
    assert chunked.changed == whole.changed
    assert final == {**states, **whole.changed}


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_property_quantity_is_never_negative(
    scenario: tuple[dict[int, ProductState], list[Event], frozenset[UUID]],
) -> None:
    states, events, done = scenario

    result = fold(states, events, done)

    for outcome in result.outcomes:
        if isinstance(outcome, Applied):
            assert 0 <= outcome.product.quantity <= MAX_QUANTITY
    for state in result.changed.values():
        assert 0 <= state.quantity <= MAX_QUANTITY


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_property_version_never_decreases(
    scenario: tuple[dict[int, ProductState], list[Event], frozenset[UUID]],
) -> None:
    states, events, done = scenario

    result = fold(states, events, done)

    current = dict(states)
    for event, outcome in zip(events, result.outcomes, strict=True):
        if not isinstance(outcome, Applied):
            continue
        before = current.get(event.product_id)
        after = outcome.product
        assert after.id == event.product_id
        if before is not None:
            assert after.version >= before.version
            if isinstance(event, StockAdjusted):
                assert after.version == before.version
            else:
                assert after.version == event.version > before.version
        current[event.product_id] = after
    assert current == {**states, **result.changed}
    for product_id, state in result.changed.items():
        if product_id in states:
            assert state.version >= states[product_id].version


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_property_refolding_with_processed_ids_decides_only_never_processed_ids_again(
    scenario: tuple[dict[int, ProductState], list[Event], frozenset[UUID]],
) -> None:
    """Folding the batch again (a replay of all of it) changes nothing through the events
    that were applied or stale: adjustments whose ids were processed are duplicates, and
    upserts and deletes that were applied or stale are stale by their version (their ids are
    never claimed); only the rest is decided again."""
    states, events, done = scenario
    first = fold(states, events, done)
    processed = done | set(kept_ids(events, first.outcomes))
    never = [e for e in events if not (needs_claim(e) and e.event_id in processed)]

    second = fold({**states, **first.changed}, events, processed)
    alone = fold({**states, **first.changed}, never)

    for event, before, outcome in zip(events, first.outcomes, second.outcomes, strict=True):
        if needs_claim(event) and event.event_id in processed:
            assert outcome is None
        if not needs_claim(event) and isinstance(before, Applied | Stale):
            assert isinstance(outcome, Stale)
    assert [o for o in second.outcomes if o is not None] == [
        o for o in alone.outcomes if o is not None
    ]
    assert second.changed == alone.changed
    assert kept_ids(events, second.outcomes) == kept_ids(never, alone.outcomes)
    if not never:
        assert second.changed == {} and kept_ids(events, second.outcomes) == []


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_property_outcomes_match_apply_event_and_duplicates_are_none(
    scenario: tuple[dict[int, ProductState], list[Event], frozenset[UUID]],
) -> None:
    states, events, done = scenario

    result = fold(states, events, done)

    current = dict(states)
    seen: set[UUID] = set()
    expected_ids: list[UUID] = []
    for event, outcome in zip(events, result.outcomes, strict=True):
        claimed = isinstance(event, StockAdjusted)
        if claimed and (event.event_id in done or event.event_id in seen):
            assert outcome is None
            continue
        assert outcome == apply_event(current.get(event.product_id), event)
        if claimed and not isinstance(outcome, Rejected):  # a rejected id stays unprocessed
            seen.add(event.event_id)
            expected_ids.append(event.event_id)
        if isinstance(outcome, Applied):
            current[event.product_id] = outcome.product
    assert kept_ids(events, result.outcomes) == expected_ids
    assert len(set(expected_ids)) == len(expected_ids)
    assert {**states, **result.changed} == current
    assert set(result.changed) == {
        event.product_id
        for event, outcome in zip(events, result.outcomes, strict=True)
        if isinstance(outcome, Applied)
    }
