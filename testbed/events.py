"""Build contract events and seeded event streams for tests, the fault suite and benchmarks."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

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
    price: str | float = "9.99",
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


# -- a labelled stream for the independent model (testbed/model.py) -------------------

MAX_QUANTITY = 2**31 - 1
HeaderList = tuple[tuple[str, bytes | None], ...]


class Rec(NamedTuple):
    """One record to publish. `label` is the dead-letter reason the generator meant it to
    have (None: a well-formed event, whose fate the model decides)."""

    key: bytes | None
    value: bytes | None
    headers: HeaderList = ()
    label: str | None = None


@dataclass(frozen=True)
class LabelledSpec:
    events: int
    products: int = 200
    seed: int = 7
    bad_share: float = 0.03
    duplicate_share: float = 0.03
    stale_share: float = 0.05
    header_share: float = 0.1
    boundary_share: float = 0.01
    # When set, ~0.5% of the records are valid events just over this size: record_too_large.
    max_record_bytes: int | None = None


HEADER_SAMPLES: list[HeaderList] = [
    (("trace-id", b"abc-123"),),
    (("x-bin", b"\x00\xff\xfe"), ("x-null", None)),
    (("dup", b"1"), ("dup", b"2"), ("error.reason", b"forged"), ("original.offset", b"-1")),
    (("caf\u00e9", "\u00fc".encode()),),
    (("contract-version", b"1"),),  # what a publisher may send: the version it read
]


def generate_records(spec: LabelledSpec) -> list[Rec]:
    """A seeded stream of records whose bad ones carry their own label. Besides the three
    event types and upstream retries, it has upserts and deletes at the stored version
    (stale), stale deletes, stock deltas up to the quantity limit and across it, and records
    with headers (binary, null, duplicate names, names like the sink's own)."""
    rng = random.Random(spec.seed)
    versions: dict[int, int] = {}
    sent: list[Rec] = []
    out: list[Rec] = []
    clock = BASE_TIME

    def emit(body: dict[str, Any], label: str | None = None) -> None:
        headers = rng.choice(HEADER_SAMPLES) if rng.random() < spec.header_share else ()
        key, value = record(body)
        item = Rec(key, value, headers, label)
        sent.append(item)
        out.append(item)

    while len(out) < spec.events:
        clock += timedelta(milliseconds=1)
        eid = uuid.UUID(int=rng.getrandbits(128), version=4)
        pid = rng.randint(1, spec.products)
        current = versions.get(pid, 0)
        roll = rng.random()
        if roll < spec.bad_share:
            key, value, label = _labelled_bad(rng, pid)
            headers = rng.choice([(), *HEADER_SAMPLES])
            if label == "unknown_contract_version":
                headers = (*headers, ("contract-version", rng.choice([b"2", b"v1", b"", None])))
            out.append(Rec(key, value, headers, label))
            continue
        roll -= spec.bad_share
        if roll < spec.duplicate_share and sent:
            out.append(sent[rng.randrange(len(sent))])
            continue
        roll -= spec.duplicate_share
        if roll < spec.stale_share and current >= 1:
            stale = rng.randint(1, current)  # the stored version or an older one
            if rng.random() < 0.5:
                # With a quantity: applied by mistake, it would leave a trace that lasts.
                body = upsert(pid, stale, name=f"stale {pid}", quantity=rng.randint(60, 99))
                emit(body | {"event_id": str(eid), "occurred_at": clock.isoformat()})
            else:
                emit(delete(pid, stale, event_id=eid, occurred_at=clock))
            continue
        roll -= spec.stale_share
        if roll < spec.boundary_share:
            # Up to the limit and across it: +k lands exactly on 2^31-1, +1 overflows,
            # -(2^31-1) lands on 0, -1 is insufficient.
            versions[pid] = current + 1
            k = rng.randint(1, 1000)
            emit(upsert(pid, current + 1, quantity=MAX_QUANTITY - k, event_id=eid))
            for delta in (k, 1, -MAX_QUANTITY, -1):
                emit(adjust(pid, delta, event_id=uuid.UUID(int=rng.getrandbits(128), version=4)))
            continue
        if spec.max_record_bytes and rng.random() < 0.005:
            body = upsert(pid, current + 1, event_id=eid, occurred_at=clock)
            body["data"]["description"] = "d" * spec.max_record_bytes
            key, value = record(body)
            out.append(Rec(key, value, (), "record_too_large"))
            continue
        if current == 0 or rng.random() < 0.25:
            versions[pid] = current + rng.choice([1, 1, 1, 2, 5])
            cents = rng.randint(0, 100000)
            body = upsert(
                pid,
                versions[pid],
                name=f"product {pid} v{versions[pid]}",
                # Some upstreams send a JSON number (v1 takes both): 1234.5, 7.0, 0.29.
                price=cents / 100 if cents % 3 == 0 else f"{cents / 100:.2f}",
                quantity=rng.choice([None, rng.randint(0, 50)]),
                event_id=eid,
                occurred_at=clock,
            )
            body["data"]["description"] = rng.choice([None, f"about {pid}", "v" * 2_000])
            emit(body)
        elif rng.random() < 0.05:
            versions[pid] = current + 1
            emit(delete(pid, current + 1, event_id=eid, occurred_at=clock))
        else:
            delta = rng.choice([-3, -2, -1, 1, 2, 5, 10, rng.randint(-MAX_QUANTITY, MAX_QUANTITY)])
            emit(adjust(pid, delta or 1, event_id=eid, occurred_at=clock))
    return out[: spec.events]


def _labelled_bad(rng: random.Random, pid: int) -> tuple[bytes | None, bytes | None, str]:
    key = str(pid).encode()
    kind = rng.randrange(11)
    if kind == 0:
        return key, b"{not json", "invalid_json"
    if kind == 1:
        return key, None, "invalid_json"  # a tombstone
    if kind == 2:
        return (
            key,
            json.dumps({"event_type": "product.upserted", "product_id": pid}).encode(),
            ("invalid_event"),
        )
    if kind == 3:
        return key, json.dumps(adjust(pid, 0)).encode(), "invalid_event"
    if kind == 4:
        return (
            key,
            json.dumps(event("product.renamed", pid, {"name": "x"}, 1)).encode(),
            ("invalid_event"),
        )
    if kind == 5:
        return key, json.dumps(upsert(pid, 1, price="1.001")).encode(), "invalid_event"
    if kind == 6:
        return key, json.dumps(adjust(pid, MAX_QUANTITY + 1)).encode(), "invalid_event"
    if kind == 9:  # a price the service must not read as Python's Decimal would ("1_0" = 10),
        # or a JSON number off the cent or out of range
        price = rng.choice(
            ["1_0", " 1.00", "1e2", "-1", "24.999", "+1", "01.5", 24.999, -1, 1e11, 0.1 + 0.2]
        )
        return key, json.dumps(upsert(pid, 1, price=price)).encode(), "invalid_event"
    if kind == 10:  # a valid event of a contract version this service does not read
        return key, json.dumps(upsert(pid, 1)).encode(), "unknown_contract_version"
    if kind == 7:  # the key names another product
        return str(pid + 1).encode(), json.dumps(upsert(pid, 1)).encode(), "invalid_event"
    return key, json.dumps(upsert(pid, 0)).encode(), "invalid_event"  # version 0
