"""Which event ids a batch claims, and which claims it keeps: pure, no I/O.

Only `stock.adjusted` events are claimed (`needs_claim`, in domain.py with the reason):
`product.upserted` and `product.deleted` are idempotent by their version, so recording their
ids would cost an index insert per event and add nothing.

The write path claims the adjustments' ids of a batch before the fold (one insert, which also
makes a concurrent transaction handling the same id wait for this one). Only the ids of
adjustments that were applied stay claimed; the fold's rejections are given back in the same
transaction, so the same event can be applied later (an upstream retry, or its dead letter
replayed once the cause is fixed), and then exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from uuid import UUID

from service.core.domain import Event, Outcome, Rejected, needs_claim


def claimed_ids(events: Sequence[Event]) -> list[UUID]:
    """The ids the batch claims, in batch order: those of its events that need a claim."""
    return [event.event_id for event in events if needs_claim(event)]


def kept_ids(events: Sequence[Event], outcomes: Sequence[Outcome | None]) -> list[UUID]:
    """The ids that stay claimed: those of the claimed events the fold did not reject, in
    batch order, once each (a later copy of such an id is a duplicate: its outcome is
    None)."""
    return [
        event.event_id
        for event, outcome in zip(events, outcomes, strict=True)
        if outcome is not None and type(outcome) is not Rejected and needs_claim(event)
    ]


def claims_to_release(
    events: Sequence[Event],
    outcomes: Sequence[Outcome | None],
    already_claimed: Set[UUID] = frozenset(),
) -> list[UUID]:
    """The ids this batch claimed whose every claimed event was rejected, sorted.

    `outcomes` are the fold's, one per event; an id some claimed event of the batch applied
    stays claimed, even when another event with that id was rejected before it;
    `already_claimed` the ids claimed before this batch (never this batch's to release). An
    id only unclaimed events carry (a rejected `product.deleted`) was never claimed by this
    batch and is never released: the claim may be someone else's.
    """
    rejected = {
        event.event_id
        for event, outcome in zip(events, outcomes, strict=True)
        if type(outcome) is Rejected and needs_claim(event)
    }
    if not rejected:
        return []
    return sorted(rejected.difference(kept_ids(events, outcomes), already_claimed))
