"""Build contract events and seeded event streams for tests, the fault suite and benchmarks."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def event(
    event_type: str,
    product_id: int,
    data: dict[str, Any] | None = None,
    version: int | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(event_id or uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": (occurred_at or BASE_TIME).isoformat(),
        "product_id": product_id,
        "data": data if data is not None else {},
    }
    if version is not None:
        body["version"] = version
    return body


def upsert(
    product_id: int,
    version: int,
    name: str = "thing",
    price: str = "9.99",
    quantity: int | None = None,
    **kw: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "price": price}
    if quantity is not None:
        data["quantity"] = quantity
    return event("product.upserted", product_id, data, version, **kw)


def delete(product_id: int, version: int, **kw: Any) -> dict[str, Any]:
    return event("product.deleted", product_id, {}, version, **kw)


def adjust(product_id: int, delta: int, **kw: Any) -> dict[str, Any]:
    return event("stock.adjusted", product_id, {"delta": delta, "reason": "test"}, **kw)


def record(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) as upstream publishes it."""
    return str(body["product_id"]).encode(), json.dumps(body).encode()


@dataclass(frozen=True)
class StreamSpec:
    events: int
    products: int = 200
    seed: int = 7
    bad_share: float = 0.03
    duplicate_share: float = 0.03
    stale_share: float = 0.03


def generate_stream(spec: StreamSpec) -> list[tuple[bytes, bytes]]:
    """A seeded stream of (key, value): all three event types, duplicates (upstream retries
    re-sent later), stale versions, and a share of bad records of every kind."""
    rng = random.Random(spec.seed)
    versions: dict[int, int] = {}
    sent: list[tuple[bytes, bytes]] = []
    out: list[tuple[bytes, bytes]] = []
    clock = BASE_TIME
    for i in range(spec.events):
        clock += timedelta(milliseconds=1)
        roll = rng.random()
        pid = rng.randint(1, spec.products)
        if roll < spec.bad_share:
            out.append(_bad_record(rng, pid, i))
            continue
        roll -= spec.bad_share
        if roll < spec.duplicate_share and sent:
            out.append(sent[rng.randrange(len(sent))])
            continue
        roll -= spec.duplicate_share
        eid = uuid.UUID(int=rng.getrandbits(128), version=4)
        current = versions.get(pid, 0)
        if roll < spec.stale_share and current > 1:
            body = upsert(
                pid, rng.randint(1, current - 1), name=f"stale {i}", event_id=eid, occurred_at=clock
            )
        elif current == 0 or rng.random() < 0.25:
            versions[pid] = current + 1
            body = upsert(
                pid,
                current + 1,
                name=f"product {pid} v{current + 1}",
                price=f"{rng.randint(0, 100000) / 100:.2f}",
                quantity=rng.choice([None, rng.randint(0, 50)]),
                event_id=eid,
                occurred_at=clock,
            )
        elif rng.random() < 0.04:
            versions[pid] = current + 1
            body = delete(pid, current + 1, event_id=eid, occurred_at=clock)
        else:
            body = adjust(
                pid, rng.choice([-3, -2, -1, 1, 2, 5, 10]), event_id=eid, occurred_at=clock
            )
        item = record(body)
        sent.append(item)
        out.append(item)
    return out


def _bad_record(rng: random.Random, pid: int, i: int) -> tuple[bytes, bytes]:
    key = str(pid).encode()
    kind = rng.randrange(5)
    if kind == 0:
        return key, b"{not json " + str(i).encode()
    if kind == 1:
        return key, json.dumps({"event_type": "product.upserted", "product_id": pid}).encode()
    if kind == 2:
        return key, json.dumps(adjust(pid, 0)).encode()
    if kind == 3:
        return key, json.dumps(event("product.renamed", pid, {"name": "x"}, 1)).encode()
    return key, json.dumps(upsert(pid, 1, price="-1.00")).encode()
