"""Unit tests for the v1 product event contract (`service/core/contract.py`)."""

from __future__ import annotations

import json
from copy import deepcopy
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from service.core.contract import (
    CONTRACT_VERSION,
    EVENT_ADAPTER,
    MAX_PRICE,
    MAX_PRODUCT_ID,
    MAX_QUANTITY,
    MAX_VERSION,
    InvalidEvent,
    InvalidJson,
    ProductDeleted,
    ProductUpserted,
    StockAdjusted,
    event_json,
    json_schema,
    parse_event,
)

# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------

EVENT_ID = "6f1c2b1e-8a4f-4a49-9d43-0c7a3b1f2e11"
OCCURRED_AT = "2024-05-01T12:00:00Z"
EVENT_TYPES = ("product.upserted", "product.deleted", "stock.adjusted")
_MISSING = object()


def upserted(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_type": "product.upserted",
        "occurred_at": OCCURRED_AT,
        "product_id": 42,
        "version": 1,
        "data": {"name": "Widget", "description": "A widget", "price": "19.99", "quantity": 3},
    }
    event.update(overrides)
    return event


def deleted(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_type": "product.deleted",
        "occurred_at": OCCURRED_AT,
        "product_id": 42,
        "version": 2,
        "data": {},
    }
    event.update(overrides)
    return event


def adjusted(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_type": "stock.adjusted",
        "occurred_at": OCCURRED_AT,
        "product_id": 42,
        "data": {"delta": -2, "reason": "sale"},
    }
    event.update(overrides)
    return event


BUILDERS = {"product.upserted": upserted, "product.deleted": deleted, "stock.adjusted": adjusted}


def with_field(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `event` with the dotted `path` set to `value` (or removed if `_MISSING`)."""
    event = deepcopy(event)
    *parents, last = path.split(".")
    target = event
    for key in parents:
        target = target[key]
    if value is _MISSING:
        target.pop(last, None)
    else:
        target[last] = value
    return event


def encode(event: Any) -> bytes:
    return json.dumps(event).encode("utf-8")


def parse(event: Any) -> ProductUpserted | ProductDeleted | StockAdjusted:
    return parse_event(encode(event))


def assert_invalid(event: Any, *fragments: str) -> str:
    """`event` must be rejected as InvalidEvent, with each fragment in the message."""
    with pytest.raises(InvalidEvent) as caught:
        parse(event)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def upsert_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "Widget", "price": "1.00"}
    data.update(overrides)
    return data


# --------------------------------------------------------------------------------------
# Valid events of every type
# --------------------------------------------------------------------------------------


def test_valid_upsert_parses_every_field() -> None:
    event = parse(upserted())

    assert isinstance(event, ProductUpserted)
    assert event.event_id == UUID(EVENT_ID)
    assert event.event_type == "product.upserted"
    assert event.occurred_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert event.product_id == 42
    assert event.version == 1
    assert event.data.name == "Widget"
    assert event.data.description == "A widget"
    assert event.data.price == Decimal("19.99")
    assert event.data.quantity == 3


def test_valid_delete_parses_every_field() -> None:
    event = parse(deleted())

    assert isinstance(event, ProductDeleted)
    assert event.event_id == UUID(EVENT_ID)
    assert event.event_type == "product.deleted"
    assert event.product_id == 42
    assert event.version == 2


def test_valid_stock_adjustment_parses_every_field() -> None:
    event = parse(adjusted(version=7))

    assert isinstance(event, StockAdjusted)
    assert event.event_id == UUID(EVENT_ID)
    assert event.event_type == "stock.adjusted"
    assert event.product_id == 42
    assert event.version == 7
    assert event.data.delta == -2
    assert event.data.reason == "sale"


@pytest.mark.parametrize(
    ("event_type", "model"),
    [
        ("product.upserted", ProductUpserted),
        ("product.deleted", ProductDeleted),
        ("stock.adjusted", StockAdjusted),
    ],
)
def test_event_type_selects_the_model(event_type: str, model: type) -> None:
    assert type(parse(BUILDERS[event_type]())) is model


def test_parsed_events_are_immutable() -> None:
    event = parse(upserted())

    with pytest.raises(ValidationError):
        event.product_id = 7  # type: ignore[misc]
    with pytest.raises(ValidationError):
        event.data.name = "Other"  # type: ignore[misc]


def test_accepts_a_utf8_bytes_value_with_non_ascii_text() -> None:
    raw = json.dumps(upserted(data=upsert_data(name="Crème brûlée ☕")), ensure_ascii=False)

    event = parse_event(raw.encode("utf-8"))

    assert isinstance(event, ProductUpserted)
    assert event.data.name == "Crème brûlée ☕"


# --------------------------------------------------------------------------------------
# Not JSON at all -> InvalidJson; JSON but not an object -> InvalidEvent
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="garbage"),
        pytest.param(b"{", id="truncated-object"),
        pytest.param(b'{"event_id": }', id="missing-value"),
        pytest.param(b"{'event_id': 'x'}", id="single-quotes"),
        pytest.param(b'{"a": 1,}', id="trailing-comma"),
        pytest.param(b"\xff\xfe\xfa", id="non-utf8-bytes"),
        pytest.param(b'{"name": "\xff"}', id="non-utf8-inside-string"),
        pytest.param("café".encode("latin-1"), id="latin-1"),
    ],
)
def test_value_that_is_not_json_is_invalid_json(value: bytes) -> None:
    with pytest.raises(InvalidJson):
        parse_event(value)


def test_non_utf8_event_is_invalid_json_even_if_otherwise_valid() -> None:
    raw = json.dumps(upserted(data=upsert_data(name="café")), ensure_ascii=False)

    with pytest.raises(InvalidJson):
        parse_event(raw.encode("latin-1"))


def test_tombstone_none_value_is_invalid_json() -> None:
    with pytest.raises(InvalidJson, match="tombstone"):
        parse_event(None)


def test_invalid_json_is_not_reported_as_invalid_event() -> None:
    with pytest.raises(ValueError) as caught:
        parse_event(b"{nope")
    assert type(caught.value) is InvalidJson
    assert not isinstance(caught.value, InvalidEvent)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"[]", id="empty-list"),
        pytest.param(b"[1, 2]", id="list"),
        pytest.param(encode([upserted()]), id="list-of-a-valid-event"),
        pytest.param(b'"product.upserted"', id="string"),
        pytest.param(b"42", id="integer"),
        pytest.param(b"4.2", id="float"),
        pytest.param(b"true", id="bool"),
        pytest.param(b"null", id="null"),
    ],
)
def test_json_that_is_not_an_object_is_invalid_event(value: bytes) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(value)
    assert type(caught.value) is InvalidEvent


def test_empty_object_is_invalid_event() -> None:
    assert_invalid({}, "event_type")


# --------------------------------------------------------------------------------------
# event_type discriminator
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type",
    [
        "product.created",
        "Product.Upserted",
        "PRODUCT.DELETED",
        "stock.adjusted ",
        "",
        "upserted",
        5,
        True,
        None,
        ["product.upserted"],
    ],
)
def test_unknown_event_type_is_invalid_event(event_type: Any) -> None:
    assert_invalid(upserted(event_type=event_type))


def test_unknown_event_type_message_names_the_expected_tags() -> None:
    assert_invalid(upserted(event_type="product.created"), "product.created", *EVENT_TYPES)


def test_missing_event_type_is_invalid_event() -> None:
    assert_invalid(with_field(upserted(), "event_type", _MISSING), "event_type")


def test_event_type_selects_the_data_rules() -> None:
    # Stock data under an upsert type is checked with the upsert rules.
    assert_invalid(upserted(data={"delta": 5}), "name", "price")
    # Upsert data under a stock type is checked with the stock rules.
    assert_invalid(adjusted(data={"name": "Widget", "price": "1.00"}), "delta")


# --------------------------------------------------------------------------------------
# Envelope: event_id, occurred_at, product_id
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@pytest.mark.parametrize("field", ["event_id", "occurred_at", "product_id"])
def test_envelope_fields_are_required(event_type: str, field: str) -> None:
    assert_invalid(with_field(BUILDERS[event_type](), field, _MISSING), field, "required")


@pytest.mark.parametrize(
    "event_id",
    [
        "6f1c2b1e-8a4f-4a49-9d43-0c7a3b1f2e11",
        "6F1C2B1E-8A4F-4A49-9D43-0C7A3B1F2E11",
        "00000000-0000-0000-0000-000000000000",
        "123e4567-e89b-12d3-a456-426614174000",
    ],
)
def test_event_id_accepts_uuids(event_id: str) -> None:
    assert parse(upserted(event_id=event_id)).event_id == UUID(event_id)


@pytest.mark.parametrize(
    "event_id",
    [
        "",
        "abc",
        "not-a-uuid-at-all",
        "6f1c2b1e-8a4f-4a49-9d43-0c7a3b1f2e1",  # one digit short
        "6f1c2b1e-8a4f-4a49-9d43-0c7a3b1f2e111",  # one digit too many
        "6f1c2b1e-8a4f-4a49-9d43-0c7a3b1f2eZZ",  # not hex
        # pydantic alone reads these; JSON Schema's `format: uuid` does not.
        "6f1c2b1e8a4f4a499d430c7a3b1f2e11",
        "{6f1c2b1e-8a4f-4a49-9d43-0c7a3b1f2e11}",
        "urn:uuid:6f1c2b1e-8a4f-4a49-9d43-0c7a3b1f2e11",
        123,
        1.5,
        True,
        None,
        [],
        {},
    ],
)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_event_id_must_be_a_uuid(event_type: str, event_id: Any) -> None:
    assert_invalid(BUILDERS[event_type](event_id=event_id), "event_id")


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+00:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        (
            "2024-05-01T14:00:00+02:00",
            datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2024-05-01T06:30:00-05:30",
            datetime(2024, 5, 1, 6, 30, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        (
            "2024-05-01T12:00:00.123456Z",
            datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        ),
    ],
)
def test_occurred_at_accepts_rfc3339_with_offset(occurred_at: str, expected: datetime) -> None:
    parsed = parse(upserted(occurred_at=occurred_at)).occurred_at

    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "occurred_at",
    [
        pytest.param("2024-05-01T12:00:00", id="naive"),
        pytest.param("2024-05-01T12:00:00.5", id="naive-fraction"),
        pytest.param("2024-05-01 12:00:00", id="naive-space"),
        pytest.param("2024-05-01", id="date-only"),
    ],
)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_occurred_at_without_offset_is_rejected(event_type: str, occurred_at: str) -> None:
    assert_invalid(BUILDERS[event_type](occurred_at=occurred_at), "occurred_at", "timezone")


@pytest.mark.parametrize(
    "occurred_at",
    [
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-05-01T25:00:00Z",
        "20240501T120000Z",
        "01/05/2024 12:00 +00:00",
        # Unix timestamps and colon-less offsets are not RFC 3339.
        1714564800,
        1714564800.5,
        0,
        "1714564800",
        "2024-05-01T12:00:00+0200",
        # RFC 3339 allows a blank for the T by agreement only; JSON Schema's date-time does not.
        "2024-05-01 12:00:00+00:00",
        "2024-05-01T12:00:00Z\n",
        "2024-05-01T12:00:00+24:00",
        None,
        True,
        [],
        {},
    ],
)
def test_occurred_at_that_is_not_a_datetime_is_rejected(occurred_at: Any) -> None:
    assert_invalid(upserted(occurred_at=occurred_at), "occurred_at")


def test_naive_python_datetime_is_rejected() -> None:
    event = upserted(occurred_at=datetime(2024, 5, 1, 12, 0))

    with pytest.raises(ValidationError, match="occurred_at"):
        EVENT_ADAPTER.validate_python(event)


def test_aware_python_datetime_is_accepted() -> None:
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    assert EVENT_ADAPTER.validate_python(upserted(occurred_at=moment)).occurred_at == moment


@pytest.mark.parametrize("product_id", [1, 2, 42, 2**31, MAX_PRODUCT_ID])
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_product_id_accepts_positive_ints_up_to_max(event_type: str, product_id: int) -> None:
    assert parse(BUILDERS[event_type](product_id=product_id)).product_id == product_id


@pytest.mark.parametrize(
    "product_id",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(-(2**63), id="min-int64"),
        pytest.param(MAX_PRODUCT_ID + 1, id="max-plus-one"),
        pytest.param(2**64, id="uint64-range"),
        pytest.param("5", id="numeric-string"),
        pytest.param("abc", id="string"),
        pytest.param(5.0, id="integral-float"),
        pytest.param(5.5, id="float"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(None, id="null"),
        pytest.param([5], id="list"),
        pytest.param({"id": 5}, id="object"),
    ],
)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_product_id_must_be_strict_positive_int64(event_type: str, product_id: Any) -> None:
    assert_invalid(BUILDERS[event_type](product_id=product_id), "product_id")


# --------------------------------------------------------------------------------------
# version
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["product.upserted", "product.deleted"])
def test_version_is_required_for_upsert_and_delete(event_type: str) -> None:
    event = with_field(BUILDERS[event_type](), "version", _MISSING)

    assert_invalid(event, "version", "required")


@pytest.mark.parametrize("event_type", ["product.upserted", "product.deleted"])
def test_version_null_is_rejected_for_upsert_and_delete(event_type: str) -> None:
    assert_invalid(BUILDERS[event_type](version=None), "version")


def test_version_is_optional_for_stock_adjustment() -> None:
    event = with_field(adjusted(), "version", _MISSING)

    assert parse(event).version is None
    assert parse(adjusted(version=None)).version is None


@pytest.mark.parametrize("version", [1, 2, 1_000_000, MAX_VERSION])
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_version_accepts_ints_from_one_to_max(event_type: str, version: int) -> None:
    assert parse(BUILDERS[event_type](version=version)).version == version


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(MAX_VERSION + 1, id="max-plus-one"),
        pytest.param("1", id="numeric-string"),
        pytest.param(1.0, id="integral-float"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param([1], id="list"),
    ],
)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_version_must_be_strict_int_at_least_one(event_type: str, version: Any) -> None:
    assert_invalid(BUILDERS[event_type](version=version), "version")


# --------------------------------------------------------------------------------------
# product.upserted data
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [_MISSING, None, [], "Widget", 5])
def test_upsert_data_must_be_an_object(data: Any) -> None:
    assert_invalid(with_field(upserted(), "data", data), "data")


@pytest.mark.parametrize("field", ["name", "price"])
def test_upsert_data_required_fields(field: str) -> None:
    assert_invalid(with_field(upserted(), f"data.{field}", _MISSING), f"data.{field}", "required")


def test_upsert_data_optional_fields_default_to_none() -> None:
    data = parse(upserted(data={"name": "Widget", "price": "1.00"})).data

    assert data.description is None
    assert data.quantity is None


@pytest.mark.parametrize("name", ["W", "Widget", " ", "x" * 255, "é" * 255, "☕"])
def test_name_accepts_1_to_255_chars(name: str) -> None:
    assert parse(upserted(data=upsert_data(name=name))).data.name == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 256, id="256-chars"),
        pytest.param("é" * 256, id="256-non-ascii-chars"),
        pytest.param(None, id="null"),
        pytest.param(5, id="int"),
        pytest.param(True, id="bool"),
        pytest.param(["Widget"], id="list"),
    ],
)
def test_name_rejects_empty_too_long_or_non_string(name: Any) -> None:
    assert_invalid(upserted(data=upsert_data(name=name)), "data.name")


@pytest.mark.parametrize("description", ["", "A widget", "x" * 10_000, None])
def test_description_accepts_string_or_null(description: str | None) -> None:
    assert parse(upserted(data=upsert_data(description=description))).data.description == (
        description
    )


@pytest.mark.parametrize("description", ["x" * 10_001, 5, True, ["a"], {"a": 1}])
def test_description_rejects_non_string_or_too_long(description: Any) -> None:
    assert_invalid(upserted(data=upsert_data(description=description)), "data.description")


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        pytest.param("19.99", Decimal("19.99"), id="string-2dp"),
        pytest.param("5", Decimal("5"), id="string-int"),
        pytest.param("0", Decimal("0"), id="zero"),
        pytest.param("0.00", Decimal("0"), id="zero-string"),
        pytest.param("0.01", Decimal("0.01"), id="one-cent"),
        pytest.param("0.5", Decimal("0.5"), id="string-1dp-half"),
        pytest.param("1.5", Decimal("1.5"), id="string-1dp"),
        pytest.param("1.50", Decimal("1.5"), id="trailing-zero"),
        pytest.param("9999999999.99", MAX_PRICE, id="max-price"),
        pytest.param(19.99, Decimal("19.99"), id="json-number"),
        pytest.param(5, Decimal("5"), id="json-integer"),
        pytest.param(0, Decimal("0"), id="json-zero"),
    ],
)
def test_price_accepts_non_negative_decimals_with_at_most_two_places(
    price: Any, expected: Decimal
) -> None:
    parsed = parse(upserted(data=upsert_data(price=price))).data.price

    assert isinstance(parsed, Decimal)
    assert parsed == expected


@pytest.mark.parametrize(
    "price",
    [
        pytest.param("1.234", id="three-places-string"),
        pytest.param("24.999", id="three-places"),
        pytest.param("1_0", id="underscore"),
        pytest.param(" 1.00", id="leading-blank"),
        pytest.param("1.00 ", id="trailing-blank"),
        pytest.param("1e2", id="exponent"),
        pytest.param("+1", id="plus-sign"),
        pytest.param("-1", id="minus-sign"),
        pytest.param("01.50", id="leading-zero"),
        pytest.param("1.", id="bare-point"),
        pytest.param(".5", id="no-integer-part"),
        pytest.param("\uff11", id="fullwidth-digit"),
        pytest.param("1.00\n", id="trailing-newline"),
        pytest.param(1.234, id="three-places-float"),
        pytest.param("0.001", id="tenth-of-a-cent"),
        pytest.param(0.1 + 0.2, id="float-noise"),
        pytest.param(-1, id="negative-int"),
        pytest.param("-0.01", id="negative-string"),
        pytest.param(-19.99, id="negative-float"),
        pytest.param("abc", id="not-a-number"),
        pytest.param("", id="empty-string"),
        pytest.param("NaN", id="nan"),
        pytest.param("Infinity", id="infinity"),
        pytest.param("10000000000.00", id="above-max"),
        pytest.param(10_000_000_000, id="above-max-int"),
        pytest.param(None, id="null"),
        pytest.param(True, id="bool"),
        pytest.param([1], id="list"),
        pytest.param({"amount": 1}, id="object"),
    ],
)
def test_price_rejects_invalid_values(price: Any) -> None:
    assert_invalid(upserted(data=upsert_data(price=price)), "data.price")


def with_price_text(price: str) -> bytes:
    """An upsert whose price is this JSON text, spelled exactly so (json.dumps would respell
    1e2 as 100.0)."""
    return encode(upserted(data=upsert_data(price="PRICE"))).replace(b'"PRICE"', price.encode())


# Contract v1 has always taken a JSON number; the service reads it as a binary64 float (as
# publishers' JSON libraries write one), in its shortest round-trip digits.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24.9", Decimal("24.9")),
        ("24.90", Decimal("24.9")),
        ("0.29", Decimal("0.29")),  # 0.28999999999999998 in binary: still 0.29
        ("0.01", Decimal("0.01")),
        ("1e-2", Decimal("0.01")),
        ("1e2", Decimal(100)),  # an exponent loses nothing: 100
        ("1E+2", Decimal(100)),
        ("2.500", Decimal("2.5")),  # trailing zeros are not decimal places
        ("0", Decimal(0)),
        ("-0", Decimal(0)),
        ("-0.0", Decimal(0)),  # the value is zero: stored as 0.00
        ("9999999999", Decimal(9999999999)),
        ("9999999999.99", MAX_PRICE),
        # More digits than a binary64 float holds: the publisher's library meant 24.9.
        ("24.899999999999999", Decimal("24.9")),
    ],
)
def test_price_as_a_json_number_is_read_as_its_float(text: str, expected: Decimal) -> None:
    event = parse_event(with_price_text(text))

    assert isinstance(event, ProductUpserted) and event.data.price == expected


NUMBER_PLACES = 'must have at most 2 decimal places; send it as a decimal string, e.g. "24.90"'
PRICE_FORMS = (
    'must be a decimal string, e.g. "24.90" (recommended), or a JSON number with at most 2 '
    "decimal places"
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("24.999", NUMBER_PLACES),
        ("0.30000000000000004", NUMBER_PLACES),  # 0.1 + 0.2 as a float prints
        ("0.001", NUMBER_PLACES),
        ("1e-7", NUMBER_PLACES),
        ("9999999999.994", NUMBER_PLACES),
        ("5e-324", NUMBER_PLACES),
        ("-1", "Input should be greater than or equal to 0"),
        ("-0.01", "Input should be greater than or equal to 0"),
        ("1e11", "must be at most 9999999999.99"),
        ("10000000000", "must be at most 9999999999.99"),
        ("12345678901234567890123", "must be at most 9999999999.99"),
        ("1e400", "Input should be a finite number"),
        ("true", PRICE_FORMS),
        ("null", PRICE_FORMS),
        ("{}", PRICE_FORMS),
    ],
)
def test_price_as_a_json_number_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(with_price_text(text))

    assert str(caught.value) == f"product.upserted.data.price: {reason}"


def test_a_price_string_is_refused_for_its_spelling_not_as_a_number() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(with_price_text('"24.999"'))

    assert str(caught.value) == (
        "product.upserted.data.price: must be a decimal string of up to 10 digits and at most "
        '2 decimals, e.g. "24.90" (no sign, exponent, spaces or _)'
    )


@pytest.mark.parametrize("quantity", [0, 1, 100, MAX_QUANTITY, None])
def test_quantity_accepts_non_negative_ints_or_null(quantity: int | None) -> None:
    assert parse(upserted(data=upsert_data(quantity=quantity))).data.quantity == quantity


@pytest.mark.parametrize(
    "quantity",
    [
        pytest.param(-1, id="negative"),
        pytest.param(MAX_QUANTITY + 1, id="above-max"),
        pytest.param("5", id="numeric-string"),
        pytest.param(5.0, id="integral-float"),
        pytest.param(5.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param([5], id="list"),
    ],
)
def test_quantity_must_be_strict_non_negative_int(quantity: Any) -> None:
    assert_invalid(upserted(data=upsert_data(quantity=quantity)), "data.quantity")


# --------------------------------------------------------------------------------------
# stock.adjusted data
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [1, -1, 5, -5, MAX_QUANTITY, -MAX_QUANTITY])
def test_delta_accepts_non_zero_ints(delta: int) -> None:
    assert parse(adjusted(data={"delta": delta})).data.delta == delta


@pytest.mark.parametrize(
    "delta",
    [
        pytest.param(0, id="zero"),
        pytest.param("5", id="numeric-string"),
        pytest.param("-5", id="negative-numeric-string"),
        pytest.param(5.0, id="integral-float"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param(MAX_QUANTITY + 1, id="above-max"),
        pytest.param(-MAX_QUANTITY - 1, id="below-min"),
        pytest.param([1], id="list"),
    ],
)
def test_delta_rejects_zero_and_non_ints(delta: Any) -> None:
    assert_invalid(adjusted(data={"delta": delta}), "data", "delta")


def test_zero_delta_message_explains_the_rule() -> None:
    assert_invalid(adjusted(data={"delta": 0}), "delta must not be zero")


def test_delta_is_required() -> None:
    assert_invalid(adjusted(data={"reason": "sale"}), "data.delta", "required")


@pytest.mark.parametrize("data", [_MISSING, None, [], 5, "delta"])
def test_stock_data_must_be_an_object(data: Any) -> None:
    assert_invalid(with_field(adjusted(), "data", data), "data")


@pytest.mark.parametrize("reason", ["sale", "", "x" * 1_000, None])
def test_reason_accepts_string_or_null(reason: str | None) -> None:
    assert parse(adjusted(data={"delta": 1, "reason": reason})).data.reason == reason


def test_reason_is_optional() -> None:
    assert parse(adjusted(data={"delta": 1})).data.reason is None


@pytest.mark.parametrize("reason", ["x" * 1_001, 5, True, ["sale"]])
def test_reason_rejects_non_string_or_too_long(reason: Any) -> None:
    assert_invalid(adjusted(data={"delta": 1, "reason": reason}), "data.reason")


# --------------------------------------------------------------------------------------
# product.deleted data
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(deleted(data={}), id="empty-data"),
        pytest.param(with_field(deleted(), "data", _MISSING), id="missing-data"),
        pytest.param(deleted(data={"why": "discontinued"}), id="data-with-extra-fields"),
    ],
)
def test_delete_data_may_be_empty_missing_or_carry_extras(event: dict[str, Any]) -> None:
    parsed = parse(event)

    assert isinstance(parsed, ProductDeleted)
    assert parsed.data.model_dump() == {}


@pytest.mark.parametrize("data", [None, [], "gone", 5])
def test_delete_data_if_present_must_be_an_object(data: Any) -> None:
    assert_invalid(deleted(data=data), "data")


# --------------------------------------------------------------------------------------
# Tolerant reader: unknown fields are ignored at every level
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_unknown_top_level_fields_are_ignored(event_type: str) -> None:
    plain = parse(BUILDERS[event_type]())
    event = BUILDERS[event_type](
        schema_version=2, source="erp", headers={"trace": "abc"}, tags=["a", "b"], extra=None
    )

    parsed = parse(event)

    assert parsed == plain
    assert not hasattr(parsed, "source")
    assert "source" not in parsed.model_dump()


def test_unknown_upsert_data_fields_are_ignored() -> None:
    event = upserted(data=upsert_data(colour="red", dimensions={"w": 1}, sku=None))

    data = parse(event).data

    assert data.model_dump() == {
        "name": "Widget",
        "description": None,
        "price": Decimal("1.00"),
        "quantity": None,
    }


def test_unknown_stock_data_fields_are_ignored() -> None:
    data = parse(adjusted(data={"delta": 3, "warehouse": "north", "batch": [1]})).data

    assert data.model_dump() == {"delta": 3, "reason": None}


def test_unknown_fields_do_not_hide_errors_in_known_fields() -> None:
    assert_invalid(upserted(data=upsert_data(price="-1", colour="red"), source="erp"), "price")


# --------------------------------------------------------------------------------------
# Error messages name the offending field path
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "path"),
    [
        (upserted(event_id="nope"), "product.upserted.event_id"),
        (deleted(occurred_at="2024-05-01T12:00:00"), "product.deleted.occurred_at"),
        (adjusted(product_id="5"), "stock.adjusted.product_id"),
        (upserted(version=0), "product.upserted.version"),
        (upserted(data=upsert_data(name="")), "product.upserted.data.name"),
        (upserted(data=upsert_data(price="1.234")), "product.upserted.data.price"),
        (upserted(data=upsert_data(quantity=-1)), "product.upserted.data.quantity"),
        (upserted(data=upsert_data(description=5)), "product.upserted.data.description"),
        (adjusted(data={"delta": "1"}), "stock.adjusted.data.delta"),
        (adjusted(data={"delta": 1, "reason": 5}), "stock.adjusted.data.reason"),
        (deleted(data=[]), "product.deleted.data"),
    ],
)
def test_error_message_names_the_field_path(event: dict[str, Any], path: str) -> None:
    assert_invalid(event, path)


def test_error_message_lists_each_offending_field() -> None:
    event = upserted(product_id=0, data=upsert_data(price="abc", quantity=-3))

    message = assert_invalid(event, "product_id", "data.price", "data.quantity")

    assert message.count(";") == 2
    assert "name" not in message


def test_error_message_is_capped_with_a_count_of_the_rest() -> None:
    event = {
        "event_id": "x",
        "event_type": "product.upserted",
        "occurred_at": "x",
        "product_id": "x",
        "version": "x",
        "data": {"name": "", "price": "x", "quantity": "x"},
    }

    message = assert_invalid(event, "event_id", "(+2 more)")

    assert message.count(";") == 5  # five described errors plus the "(+2 more)" part
    assert "data.quantity" not in message


@pytest.mark.parametrize("value", [[], "text", 5])
def test_error_for_a_non_object_says_an_object_is_expected(value: Any) -> None:
    assert_invalid(value, "object")


def test_validation_details_are_not_chained() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse(upserted(product_id=0))

    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


# --------------------------------------------------------------------------------------
# json_schema() and event_json()
# --------------------------------------------------------------------------------------


def test_json_schema_describes_the_three_event_types() -> None:
    schema = json_schema()

    assert schema["title"] == f"inventory-sink product event v{CONTRACT_VERSION}"
    assert schema["required"] == ["event_type"]
    assert set(schema["properties"]["event_type"]["enum"]) == set(EVENT_TYPES)
    # each event type chooses its own schema (if/then), so a validator names the wrong field
    chosen = {
        rule["if"]["properties"]["event_type"]["const"]: rule["then"]["$ref"]
        for rule in schema["allOf"]
    }
    assert chosen == {
        "product.upserted": "#/$defs/ProductUpserted",
        "product.deleted": "#/$defs/ProductDeleted",
        "stock.adjusted": "#/$defs/StockAdjusted",
    }
    for event_type, ref in chosen.items():
        model = schema["$defs"][ref.rsplit("/", 1)[-1]]
        assert model["properties"]["event_type"]["const"] == event_type


@pytest.mark.parametrize(
    ("model", "required"),
    [
        (
            "ProductUpserted",
            {"event_id", "occurred_at", "product_id", "event_type", "version", "data"},
        ),
        ("ProductDeleted", {"event_id", "occurred_at", "product_id", "event_type", "version"}),
        ("StockAdjusted", {"event_id", "occurred_at", "product_id", "event_type", "data"}),
        ("UpsertData", {"name", "price"}),
        ("StockData", {"delta"}),
    ],
)
def test_json_schema_required_fields(model: str, required: set[str]) -> None:
    assert set(json_schema()["$defs"][model].get("required", [])) == required


def test_json_schema_field_constraints() -> None:
    defs = json_schema()["$defs"]

    envelope = defs["ProductUpserted"]["properties"]
    assert envelope["event_id"]["format"] == "uuid"
    assert envelope["occurred_at"]["format"] == "date-time"
    assert envelope["product_id"]["exclusiveMinimum"] == 0
    assert envelope["product_id"]["maximum"] == MAX_PRODUCT_ID
    assert envelope["version"]["minimum"] == 1
    name = defs["UpsertData"]["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (1, 255)


def test_json_schema_is_json_serialisable_and_fresh_each_call() -> None:
    first = json_schema()
    first["title"] = "mutated"

    assert json.loads(json.dumps(json_schema()))["title"].startswith("inventory-sink")


@pytest.mark.parametrize(
    ("event_type", "data", "version"),
    [
        ("product.upserted", {"name": "Widget", "price": "2.50", "quantity": 4}, 3),
        ("product.deleted", {}, 4),
        ("stock.adjusted", {"delta": -1, "reason": "sale"}, None),
        ("stock.adjusted", {"delta": 2}, 5),
    ],
)
def test_event_json_round_trips_through_parse_event(
    event_type: Any, data: dict[str, Any], version: int | None
) -> None:
    event_id = UUID(EVENT_ID)
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    built = event_json(
        event_id=event_id,
        event_type=event_type,
        product_id=9,
        occurred_at=moment,
        data=data,
        version=version,
    )
    parsed = parse(built)

    assert ("version" in built) is (version is not None)
    assert parsed.event_type == event_type
    assert parsed.event_id == event_id
    assert parsed.occurred_at == moment
    assert parsed.product_id == 9
    assert parsed.version == version


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (upserted(data={"name": "a\u0000b", "price": "1.00"}), "name"),
        (upserted(data={"name": "ok", "description": "\u0000", "price": "1.00"}), "description"),
        (adjusted(data={"delta": 1, "reason": "nul \u0000 inside"}), "reason"),
    ],
)
def test_text_with_a_nul_character_is_rejected_because_postgresql_cannot_store_it(
    event: dict[str, Any], field: str
) -> None:
    assert_invalid(event, field, "NUL")
