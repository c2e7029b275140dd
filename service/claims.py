"""Which event-id claims a batch keeps: pure, no I/O.

The write path claims every event id of a batch before the fold (one insert, which also
makes a concurrent transaction handling the same id wait for this one). Only the ids of
events that were applied or stale stay claimed; the fold's rejections are given back in the
same transaction, so the same event can be applied later (an upstream retry, or its dead
letter replayed once the cause is fixed), and then exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from uuid import UUID

from service.domain import Event, Outcome, Rejected


def kept_ids(events: Sequence[Event], outcomes: Sequence[Outcome | None]) -> list[UUID]:
    """The ids of the events the fold applied or found stale, in batch order, once each (a
    later copy of such an id is a duplicate: its outcome is None)."""
    return [
        event.event_id
        for event, outcome in zip(events, outcomes, strict=True)
        if outcome is not None and type(outcome) is not Rejected
    ]


def claims_to_release(
    events: Sequence[Event],
    outcomes: Sequence[Outcome | None],
    already_claimed: Set[UUID] = frozenset(),
) -> list[UUID]:
    """The ids this batch claimed whose every event was rejected, sorted.

    `outcomes` are the fold's, one per event; an id some event of the batch applied or found
    stale stays claimed, even when another event with that id was rejected before it;
    `already_claimed` the ids claimed before this batch (never this batch's to release).
    """
    rejected = {
        event.event_id
        for event, outcome in zip(events, outcomes, strict=True)
        if type(outcome) is Rejected
    }
    if not rejected:
        return []
    return sorted(rejected.difference(kept_ids(events, outcomes), already_claimed))
