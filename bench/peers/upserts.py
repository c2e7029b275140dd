"""The peers' stream and what their tables must hold (pure: no I/O).

Both peers can only upsert whole rows (no deletes, no stock deltas, no dead letters), so they
get the stream's valid `product.upserted` records, with the same keys, in the same order
(the independent model, `testbed.model`, says which records those are). Stale versions and
upstream retries stay in: a peer writes them over newer rows (last write wins), and its
expected table is exactly that. A row's `quantity` is the event's, or 0 when it has none.

Kafka Connect's JsonConverter needs each record as a schema + payload envelope: the payload
is the event itself; the schema types `occurred_at` as Debezium's `ZonedTimestamp` (an
RFC 3339 string), which the JDBC sink binds as a timestamptz without a transform.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from testbed import model

Pair = tuple[bytes, bytes]


class PeerRow(NamedTuple):
    """A row of the peers' `products` table (bench/peers/schema.sql)."""

    id: int
    name: str
    description: str | None
    price: Decimal
    quantity: int
    version: int
    occurred_at: datetime


@dataclass
class PeerStream:
    """What the peer modes need besides the upserts topic itself."""

    expected: dict[int, PeerRow]  # the last-write-wins table
    sentinels: list[int]  # per partition, the product of its last record
    envelope_topic: str  # the same records in Connect's schema + payload envelope
    differences: str  # how the peers' table differs from the contract's (a note)


def sentinels(split: Sequence[Sequence[Pair]]) -> list[int]:
    """Per partition (records in order), the product id of its last record: once each of these
    rows holds its final state, the sink has reached the end of every partition (then the
    whole table is compared)."""
    return [int(records[-1][0]) for records in split if records]


def upserts(pairs: Iterable[Pair]) -> list[Pair]:
    """The records of `pairs` that are valid `product.upserted` events, in order."""
    out = []
    for key, value in pairs:
        read = model.read_record(key, value)
        if isinstance(read, model.Event) and read.kind == model.UPSERT:
            out.append((key, value))
    return out


def last_write_wins(pairs: Iterable[Pair]) -> dict[int, PeerRow]:
    """The table a whole-row upsert sink leaves after `pairs` (valid upserts, in order)."""
    rows: dict[int, PeerRow] = {}
    for key, value in pairs:
        event = model.read_record(key, value)
        assert isinstance(event, model.Event) and event.version is not None, value
        rows[event.product_id] = PeerRow(
            event.product_id,
            event.name,
            event.description,
            event.price,
            event.quantity or 0,
            event.version,
            event.occurred_at,
        )
    return rows


def contract_differences(peer: dict[int, PeerRow], contract: dict[int, model.Product]) -> str:
    """How a last-write-wins table differs from the contract's on the same stream."""
    older = sum(1 for pid, row in peer.items() if row.version < contract[pid].version)
    stock = sum(
        1
        for pid, row in peer.items()
        if row.version == contract[pid].version and row.quantity != contract[pid].quantity
    )
    return (
        f"last write wins: {older:,} of {len(peer):,} products end at an older version than the "
        f"contract's (stale upserts and retries written over newer rows), {stock:,} more with "
        "another quantity (an upsert without quantity sets 0 instead of keeping the stock)"
    )


ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
CONNECT_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "name": "inventory.ProductUpserted",
    "optional": False,
    "fields": [
        {"field": "event_id", "type": "string", "optional": False},
        {"field": "event_type", "type": "string", "optional": False},
        {"field": "occurred_at", "type": "string", "name": ZONED_TIMESTAMP, "version": 1},
        {"field": "product_id", "type": "int64", "optional": False},
        {"field": "version", "type": "int64", "optional": False},
        {
            "field": "data",
            "type": "struct",
            "optional": False,
            "fields": [
                {"field": "name", "type": "string", "optional": False},
                {"field": "description", "type": "string", "optional": True},
                {"field": "price", "type": "string", "optional": False},
                {"field": "quantity", "type": "int32", "optional": True, "default": 0},
            ],
        },
    ],
}


def connect_envelope(pairs: Sequence[Pair]) -> list[Pair]:
    """Each upsert as JsonConverter (schemas.enable=true) reads it; keys unchanged."""
    schema = json.dumps(CONNECT_SCHEMA, separators=(",", ":")).encode()
    out = []
    for key, value in pairs:
        out.append((key, b'{"schema":' + schema + b',"payload":' + value + b"}"))
    return out
