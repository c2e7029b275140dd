"""Which event ids a batch claims (only stock.adjusted ones), and which claims it gives back:
the ids the fold only rejected."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from service.core.claims import claimed_ids, claims_to_release, kept_ids
from service.core.contract import parse_event
from service.core.domain import Event, ProductState, Stale, fold
from testbed.events import adjust, delete, upsert


def ev(body: dict[str, Any]) -> Event:
    return parse_event(json.dumps(body).encode())


def decide(
    states: dict[int, ProductState], events: list[Event], already: set[uuid.UUID]
) -> list[Any]:
    result = fold(states, events, frozenset(already))
    return claims_to_release(events, result.outcomes, already)


def test_a_batch_without_rejections_releases_nothing() -> None:
    events = [ev(upsert(1, 1, quantity=1)), ev(adjust(1, 2))]
    assert decide({}, events, set()) == []


def test_the_id_of_a_rejected_event_is_released() -> None:
    bad = ev(adjust(9, 1))
    assert decide({}, [ev(upsert(1, 1)), bad], set()) == [bad.event_id]


def test_a_rejected_id_applied_later_in_the_same_batch_stays_claimed() -> None:
    event_id = uuid.uuid4()
    early = ev(adjust(1, 5, event_id=event_id))  # no product 1 yet: rejected
    events = [early, ev(upsert(1, 1, quantity=1)), early]  # the copy after the upsert applies
    result = fold({}, events)

    assert claims_to_release(events, result.outcomes) == []
    assert result.changed[1].quantity == 6


def test_an_id_rejected_twice_in_a_batch_is_released_once() -> None:
    bad = ev(adjust(9, 1))
    assert decide({}, [bad, bad], set()) == [bad.event_id]


def test_ids_claimed_before_the_batch_are_never_released() -> None:
    """A duplicate of an id another batch holds is no rejection of this batch's: that claim
    belongs to the batch that applied it."""
    done = ev(adjust(9, 1))
    bad = ev(adjust(8, 1))
    assert decide({}, [done, bad], {done.event_id}) == [bad.event_id]
    assert claims_to_release([done], [None], {done.event_id}) == []


def test_only_stock_adjustments_are_claimed_in_batch_order() -> None:
    """Upserts and deletes are idempotent by their version: claiming them again would cost
    an index insert per event in processed_events and add nothing."""
    first, second = ev(adjust(1, 2)), ev(adjust(2, -1, version=4))
    events = [ev(upsert(1, 1)), first, ev(delete(1, 2)), second, first]
    assert claimed_ids(events) == [first.event_id, second.event_id, first.event_id]
    assert claimed_ids([ev(upsert(1, 1)), ev(delete(1, 2))]) == []


def test_a_rejected_delete_was_never_claimed_so_is_never_released() -> None:
    """Deleting an unknown product is rejected; its id was not claimed by this batch (so it
    is not among the duplicates the claim returned either). A row with that id in
    processed_events is another batch's claim, and releasing it would let that event
    apply a second time."""
    unknown = ev(delete(9, 2))
    assert decide({}, [unknown], set()) == []
    assert decide({}, [unknown, ev(upsert(9, 1)), unknown], set()) == []


def test_stale_upserts_keep_no_claim_and_rejections_are_released() -> None:
    current = ProductState(1, "x", None, Decimal("1"), 3, 5)
    stale = ev(upsert(1, 2))
    insufficient = ev(adjust(1, -10))
    result = fold({1: current}, [stale, insufficient])
    assert result.outcomes[0] == Stale(5)
    assert kept_ids([stale, insufficient], result.outcomes) == []
    assert decide({1: current}, [stale, insufficient], set()) == [insufficient.event_id]


def test_released_ids_are_sorted() -> None:
    bad = [ev(adjust(100 + i, 1)) for i in range(20)]
    released = decide({}, bad, set())
    assert released == sorted(e.event_id for e in bad)


def test_kept_ids_are_those_of_applied_adjustments_once_each_in_order() -> None:
    stale = ev(upsert(1, 1))
    bad = ev(adjust(2, 1))
    good = ev(adjust(1, 1))
    events = [stale, bad, good, bad, stale, good]
    current = ProductState(1, "x", None, Decimal("1"), 3, 5)

    result = fold({1: current}, events)

    assert kept_ids(events, result.outcomes) == [good.event_id]
