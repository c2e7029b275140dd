"""An independent reference model of the sink, written from the README's contract.

It reads records ("Event contract (v1)": which record is an event, which goes to the
dead-letter topic and why) and folds events over products ("product.upserted",
"product.deleted", "stock.adjusted", and "How exactly-once holds": a `stock.adjusted` event
id is applied once and a rejected one keeps no claim; upserts and deletes are decided by their
version alone, so a repeat of one is stale). It imports nothing from `service`: the fault suite
and the write-path tests compare the service with this model, so a bug in the service's
own domain code cannot also move the expectation.

Where the README leaves a detail open, the model states the choice it makes:
- a record with no key, or an empty key, is not checked against its product id;
- `data.price` is a JSON string of plain digits: up to 10 before an optional point and 1 or
  2 after it (no sign, exponent, blanks or `_`); or a JSON number in 0 .. 9999999999.99
  with at most 2 decimal places as Python reads it (a float, by its shortest repr: 1e2 is
  100, 24.999 and 0.1 + 0.2 have too many), trailing zeros not counted (2.500 is 2.5);
- `event_id` is a UUID written 8-4-4-4-12 (hex digits of any case), nothing else;
- a `contract-version` header (the last of that name) other than `1` dead-letters the record
  as `unknown_contract_version` before its value is read; no such header means version 1;
- JSON nested more than 200 non-empty containers deep, and JSON text with a lone UTF-16
  surrogate escape, are not JSON (`invalid_json`): the service's parser refuses both;
- `version`, when a `stock.adjusted` event gives one, must still be an integer in range.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

MAX_PRODUCT_ID = 2**63 - 1
MAX_VERSION = 2**63 - 1
MAX_QUANTITY = 2**31 - 1
MAX_PRICE = Decimal("9999999999.99")
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 200

UPSERT, DELETE, ADJUST = "product.upserted", "product.deleted", "stock.adjusted"
# Dead-letter reasons (README, "Dead letters").
INVALID_JSON = "invalid_json"
INVALID_EVENT = "invalid_event"
UNKNOWN_PRODUCT = "unknown_product"
INSUFFICIENT_STOCK = "insufficient_stock"
QUANTITY_OVERFLOW = "quantity_overflow"
RECORD_TOO_LARGE = "record_too_large"
UNKNOWN_CONTRACT_VERSION = "unknown_contract_version"
# The fate of an event that is not dead-lettered.
APPLIED, STALE, DUPLICATE = "applied", "stale", "duplicate"
SINK_HEADERS = ("error.reason", "error.message", "original.topic", "original.partition")
SINK_HEADERS += ("original.offset",)

Headers = Sequence[tuple[str, bytes | None]]


class Product(NamedTuple):
    """A row of `products` (the columns the contract speaks of)."""

    id: int
    name: str
    description: str | None
    price: Decimal
    quantity: int
    version: int
    deleted_at: datetime | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class Event:
    event_id: uuid.UUID
    kind: str
    product_id: int
    occurred_at: datetime
    version: int | None = None
    name: str = ""
    description: str | None = None
    price: Decimal = Decimal(0)
    quantity: int | None = None
    delta: int = 0


@dataclass(frozen=True)
class Bad:
    reason: str
    why: str


# -- reading a record ------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)\Z",
    re.ASCII,
)
_PRICE = re.compile(r"(?:0|[1-9]\d{0,9})(?:\.\d{1,2})?\Z", re.ASCII)
_HYPHENATED = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID = re.compile(rf"{_HYPHENATED}\Z", re.IGNORECASE)


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    size = len(key or b"") + len(value or b"")
    return size + sum(len(name.encode()) + len(data or b"") for name, data in headers)


def read_record(
    key: bytes | None,
    value: bytes | None,
    headers: Headers = (),
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Event | Bad:
    """The event a record carries, or why it is dead-lettered (`Bad`)."""
    if record_size(key, value, headers) > max_record_bytes:
        return Bad(RECORD_TOO_LARGE, "key + value + headers over MAX_RECORD_BYTES")
    versions = [data for name, data in headers if name == "contract-version"]
    if versions and versions[-1] != b"1":
        return Bad(UNKNOWN_CONTRACT_VERSION, f"contract-version {versions[-1]!r}")
    if value is None:
        return Bad(INVALID_JSON, "tombstone")
    try:
        document = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        return Bad(INVALID_JSON, f"not UTF-8 JSON: {type(error).__name__}")
    if not _plain_json(document):
        return Bad(INVALID_JSON, "nested too deep, or a lone surrogate escape")
    try:
        event = _event(document)
    except _Invalid as error:
        return Bad(INVALID_EVENT, str(error))
    if key and key != str(event.product_id).encode():
        return Bad(INVALID_EVENT, "key does not match product_id")
    return event


class _Invalid(Exception):
    pass


def _plain_json(document: Any) -> bool:
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return False
        elif isinstance(item, dict | list) and item:
            if depth + 1 > MAX_JSON_DEPTH:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                stack.extend((name, depth) for name in item)
    return True


def _int(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _Invalid(f"{where}: must be an integer in {low}..{high}")
    return value


def _text(value: Any, where: str, low: int, high: int, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not low <= len(value) <= high or "\x00" in value:
        raise _Invalid(f"{where}: must be text of {low}..{high} characters without NUL")
    return value


def _price(value: Any) -> Decimal:
    if isinstance(value, str):
        if not _PRICE.match(value):
            raise _Invalid("data.price: a string must be digits, at most 10 . 2")
        return Decimal(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("data.price: must be a string or a number")
    price = Decimal(repr(value))
    if not price.is_finite() or not 0 <= price <= MAX_PRICE:
        raise _Invalid("data.price: must be 0 .. 9999999999.99")
    exponent = price.normalize().as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -2:
        raise _Invalid("data.price: at most 2 decimal places")
    return price


def _timestamp(value: Any) -> datetime:
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise _Invalid("occurred_at: must be RFC 3339 with an offset")
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{(fraction or '')[:7]}{offset}")
    except ValueError:
        raise _Invalid("occurred_at: not a real moment") from None
    return moment


def _event(document: Any) -> Event:
    if not isinstance(document, dict):
        raise _Invalid("value: must be a JSON object")
    kind = document.get("event_type")
    if kind not in (UPSERT, DELETE, ADJUST):
        raise _Invalid("event_type: must be one of the three event types")
    event_id = document.get("event_id")
    if not isinstance(event_id, str) or not _UUID.match(event_id):
        raise _Invalid("event_id: must be a UUID")
    common: dict[str, Any] = {
        "event_id": uuid.UUID(event_id),
        "kind": kind,
        "product_id": _int(document.get("product_id"), "product_id", 1, MAX_PRODUCT_ID),
        "occurred_at": _timestamp(document.get("occurred_at")),
    }
    version = document.get("version")
    if kind != ADJUST or version is not None:
        common["version"] = _int(version, "version", 1, MAX_VERSION)
    data = document.get("data", {} if kind == DELETE else None)
    if not isinstance(data, dict):
        raise _Invalid("data: must be an object")
    if kind == DELETE:
        return Event(**common)
    if kind == ADJUST:
        if "delta" not in data:
            raise _Invalid("data.delta: required")
        delta = _int(data["delta"], "data.delta", -MAX_QUANTITY, MAX_QUANTITY)
        if delta == 0:
            raise _Invalid("data.delta: must not be zero")
        _text(data.get("reason"), "data.reason", 0, 1_000, nullable=True)
        return Event(**common, delta=delta)
    if "name" not in data or "price" not in data:
        raise _Invalid("data.name and data.price are required")
    quantity = data.get("quantity")
    return Event(
        **common,
        name=str(_text(data["name"], "data.name", 1, 255)),
        description=_text(data.get("description"), "data.description", 0, 10_000, nullable=True),
        price=_price(data["price"]),
        quantity=None if quantity is None else _int(quantity, "quantity", 0, MAX_QUANTITY),
    )


# -- folding events --------------------------------------------------------------------------


@dataclass
class Model:
    """The table and the claimed event ids after the events it was given, in order.

    Only `stock.adjusted` ids are claimed (README, "event_id"): a delta repeated would count
    twice, while a repeated upsert or delete carries a version that is no longer greater
    than the stored one, so it is stale, in whichever batch and however late it comes.
    """

    products: dict[int, Product] = field(default_factory=dict)
    claimed: set[uuid.UUID] = field(default_factory=set)

    def apply(self, event: Event) -> str:
        """Apply one event: its fate (applied, stale, duplicate) or its dead-letter reason."""
        if event.kind == ADJUST and event.event_id in self.claimed:
            return DUPLICATE
        fate = self._decide(event)
        if event.kind == ADJUST and fate == APPLIED:
            self.claimed.add(event.event_id)
        return fate

    def _decide(self, event: Event) -> str:
        current = self.products.get(event.product_id)
        pid = event.product_id
        if event.kind == UPSERT:
            assert event.version is not None
            if current is not None and event.version <= current.version:
                return STALE
            if event.quantity is not None:
                quantity = event.quantity
            else:
                quantity = current.quantity if current is not None else 0
            self.products[pid] = Product(
                pid, event.name, event.description, event.price, quantity, event.version
            )
            return APPLIED
        if event.kind == DELETE:
            assert event.version is not None
            if current is None:
                return UNKNOWN_PRODUCT
            if event.version <= current.version:
                return STALE
            deleted_at = current.deleted_at or event.occurred_at
            self.products[pid] = current._replace(version=event.version, deleted_at=deleted_at)
            return APPLIED
        if current is None or current.is_deleted:
            return UNKNOWN_PRODUCT
        quantity = current.quantity + event.delta
        if quantity < 0:
            return INSUFFICIENT_STOCK
        if quantity > MAX_QUANTITY:
            return QUANTITY_OVERFLOW
        self.products[pid] = current._replace(quantity=quantity)
        return APPLIED


# -- a whole stream --------------------------------------------------------------------------


def _parts(item: Sequence[Any]) -> tuple[bytes | None, bytes | None, Headers, str | None]:
    """(key, value), (key, value, headers) or a labelled record (key, value, headers, label)."""
    key, value = item[0], item[1]
    headers = item[2] if len(item) > 2 else ()
    label = item[3] if len(item) > 3 else None
    return key, value, headers, label


@dataclass
class Expected:
    products: dict[int, Product]
    processed_ids: set[uuid.UUID]  # the ids of the applied stock.adjusted events
    # Per input record, in order: its fate, or the reason it is dead-lettered.
    fates: list[str]

    def letters(self) -> Iterator[tuple[int, str]]:
        """(index of the input record, reason) of each record that is dead-lettered."""
        for index, fate in enumerate(self.fates):
            if fate not in (APPLIED, STALE, DUPLICATE):
                yield index, fate


def expect(
    records: Sequence[Sequence[Any]], max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Expected:
    """Run the records in order (each product's records share a partition, so this is the
    order the sink sees them in). A record's label, when it has one, must be the reason the
    model gives: the generator and the model then agree on every bad record."""
    model = Model()
    fates = []
    for index, item in enumerate(records):
        key, value, headers, label = _parts(item)
        read = read_record(key, value, headers, max_record_bytes)
        fate = read.reason if isinstance(read, Bad) else model.apply(read)
        if label is not None and label != fate:
            raise AssertionError(
                f"record {index}: the generator labelled it {label}, the model says {fate}"
                f" ({read.why if isinstance(read, Bad) else 'an event'}): {value!r:.200}"
            )
        fates.append(fate)
    return Expected(model.products, set(model.claimed), fates)


def original_headers(headers: Headers) -> list[tuple[str, bytes | None]]:
    """A dead letter's headers without the sink's five (README: always the last five)."""
    headers = list(headers)
    assert tuple(name for name, _ in headers[-5:]) == SINK_HEADERS, headers[-5:]
    return headers[:-5]
