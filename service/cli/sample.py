"""A small, readable story of product events for demos: `python -m service publish --sample`."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from service.core.contract import event_json

NAMESPACE = uuid.UUID("6f1c1a52-3c43-4a9c-9b1c-0d6a3e0b5a10")


def sample_events(run: str = "demo") -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: three products, stock moves, a delete, a duplicate, bad records.

    Event ids derive from `run`, so publishing the same run twice shows deduplication.
    """
    start = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    counter = 0

    def event(
        event_type: str, product_id: int, data: dict[str, object], version: int | None = None
    ) -> tuple[bytes, bytes]:
        nonlocal counter
        counter += 1
        body = event_json(
            event_id=uuid.uuid5(NAMESPACE, f"{run}-{counter}"),
            event_type=event_type,  # type: ignore[arg-type]
            product_id=product_id,
            occurred_at=start + timedelta(minutes=counter),
            data=data,
            version=version,
        )
        return str(product_id).encode(), json.dumps(body).encode()

    events = [
        event(
            "product.upserted",
            1,
            {
                "name": "Espresso beans 1kg",
                "description": "Dark roast",
                "price": "24.90",
                "quantity": 40,
            },
            1,
        ),
        event("product.upserted", 2, {"name": "Milk frother", "price": "39.50", "quantity": 10}, 1),
        event(
            "product.upserted",
            3,
            {"name": "Paper filters (100)", "description": None, "price": "3.20"},
            1,
        ),
        event("stock.adjusted", 1, {"delta": -3, "reason": "order 1001"}),
        event("stock.adjusted", 3, {"delta": 250, "reason": "delivery"}),
        event("product.upserted", 2, {"name": "Milk frother Pro", "price": "44.00"}, 2),
        event("product.upserted", 2, {"name": "stale name", "price": "1.00"}, 1),
        event("product.deleted", 3, {}, 2),
    ]
    events.append(events[3])  # an upstream retry of "order 1001": applied once
    events += [
        (b"1", b"{not json"),
        (b"2", json.dumps({"event_type": "product.upserted", "product_id": 2}).encode()),
        event("stock.adjusted", 2, {"delta": -999, "reason": "oversold"}),
        event("stock.adjusted", 42, {"delta": 1}),
    ]
    return events
