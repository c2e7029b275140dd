"""The published JSON Schema and the service agree on every event, both ways.

A standard validator (jsonschema, Draft 2020-12, with format checking) judges each generated
document by contract/product-event.v1.schema.json's rules; the service judges its JSON text with
`parse_event`. They must give the same verdict, except where a rule is one JSON Schema cannot
express: those are named in `NOT_IN_JSON_SCHEMA` (the schema's description lists them too) and
each has a predicate here that says when it applies. One more exception is the validator's,
not the schema's: `VALIDATOR_DEVIATIONS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from copy import deepcopy
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from service.core.contract import (
    MAX_PRICE,
    MAX_PRODUCT_ID,
    MAX_QUANTITY,
    NOT_IN_JSON_SCHEMA,
    InvalidEvent,
    InvalidJson,
    json_schema,
    parse_event,
)

VALIDATOR = Draft202012Validator(json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
ENVELOPE_INTEGERS = (("product_id",), ("version",))
DATA_INTEGERS = {"product.upserted": ("quantity",), "stock.adjusted": ("delta",)}


def _at(document: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def _integral_float(document: Any) -> bool:
    """An integer field written as a number with a fraction or exponent (1.0, 1e2)."""
    if not isinstance(document, dict):
        return False
    data = DATA_INTEGERS.get(document.get("event_type"), ())  # type: ignore[call-overload]
    paths = [*ENVELOPE_INTEGERS, *(("data", name) for name in data)]
    return any(isinstance(_at(document, path), float) for path in paths)


def _final_newline(document: Any) -> bool:
    """A pattern-checked string that would match but for a final newline."""
    if not isinstance(document, dict):
        return False
    paths = [("occurred_at",)]
    if document.get("event_type") == "product.upserted":
        paths.append(("data", "price"))
    return any(isinstance(text := _at(document, p), str) and text.endswith("\n") for p in paths)


def _number_decimal_places(document: Any) -> bool:
    """An upsert's price sent as a JSON number within the schema's range that has more than
    2 decimals as the service reads it (its shortest float digits, as json.dumps writes it)."""
    if not isinstance(document, dict) or document.get("event_type") != "product.upserted":
        return False
    price = _at(document, ("data", "price"))
    if isinstance(price, bool) or not isinstance(price, int | float):
        return False
    if not 0 <= price <= float(MAX_PRICE):
        return False
    exponent = Decimal(repr(price)).normalize().as_tuple().exponent
    return isinstance(exponent, int) and exponent < -2


# Rules the schema cannot state, by their names in NOT_IN_JSON_SCHEMA: when each applies to a
# document the schema accepts, the service refuses it. (The other two named rules are about the
# record around the value, the key and the size, which `parse_event` does not see; the JSON
# text rule is about text this test never generates: lone surrogates, 200 levels of nesting.)
EXCEPTIONS: dict[str, Callable[[Any], bool]] = {
    "integer-literal": _integral_float,
    "number-decimal-places": _number_decimal_places,
}
# Python's jsonschema runs `pattern` with Python's `re`, whose `$` also matches before a final
# newline; ECMA 262 (the dialect JSON Schema specifies) and the service's regex engine do not.
VALIDATOR_DEVIATIONS: dict[str, Callable[[Any], bool]] = {"python-re-final-newline": _final_newline}


def test_the_exceptions_are_the_ones_the_schema_names() -> None:
    assert set(EXCEPTIONS) <= set(NOT_IN_JSON_SCHEMA)
    description = json_schema()["description"]
    assert all(f"- {name}: " in description for name in NOT_IN_JSON_SCHEMA)


def test_the_validator_checks_the_formats_the_schema_uses() -> None:
    """Without rfc3339-validator, jsonschema skips `format: date-time` without a word."""
    checkers = Draft202012Validator.FORMAT_CHECKER.checkers
    assert {"date-time", "uuid"} <= set(checkers), "pip install rfc3339-validator"


def service_accepts(document: Any) -> tuple[bool, str]:
    try:
        parse_event(json.dumps(document).encode())
    except (InvalidEvent, InvalidJson) as error:
        return False, str(error)
    return True, ""


def schema_accepts(document: Any) -> bool:
    """What the service should decide, judged by the schema and the named exceptions."""
    if not VALIDATOR.is_valid(document):
        return False
    rules = {**EXCEPTIONS, **VALIDATOR_DEVIATIONS}
    return not any(applies(document) for applies in rules.values())


def assert_agree(document: Any) -> None:
    accepted, message = service_accepts(document)
    expected = schema_accepts(document)
    errors = [e.message for e in VALIDATOR.iter_errors(document)][:3]
    assert accepted == expected, (
        f"service {'accepts' if accepted else 'refuses'} ({message}), schema "
        f"{'accepts' if expected else f'refuses {errors}'}: {json.dumps(document)[:300]}"
    )


# -- valid events ----------------------------------------------------------------------------

no_nul = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
uuids = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.builds(
    lambda moment, tz, zulu: _rfc3339(moment.replace(tzinfo=tz), zulu),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offsets,
    st.booleans(),
)


def _rfc3339(moment: datetime, zulu: bool) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if zulu and moment.utcoffset() == timedelta(0) else text


@st.composite
def prices(draw: st.DrawFn) -> str | int | float:
    cents = draw(st.integers(min_value=0, max_value=999_999_999_999))
    whole, fraction = divmod(cents, 100)
    spelling = draw(st.sampled_from(["whole", "one", "two", "number"]))
    if spelling == "number":  # a JSON number: the float nearest, written in its shortest form
        return whole if fraction == 0 and draw(st.booleans()) else cents / 100
    if spelling == "whole" and fraction == 0:
        return str(whole)
    if spelling == "one" and fraction % 10 == 0:
        return f"{whole}.{fraction // 10}"
    return f"{whole}.{fraction:02d}"


ints = st.integers
product_ids = ints(min_value=1, max_value=MAX_PRODUCT_ID)
versions = ints(min_value=1, max_value=2**63 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | ints()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(no_nul, max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=5,
)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["product.upserted", "product.deleted", "stock.adjusted"]))
    event: dict[str, Any] = {
        "event_id": draw(uuids),
        "event_type": kind,
        "occurred_at": draw(moments),
        "product_id": draw(product_ids),
    }
    if kind == "product.upserted":
        event["version"] = draw(versions)
        data: dict[str, Any] = {
            "name": draw(st.text(no_nul, min_size=1, max_size=255)),
            "price": draw(prices()),
        }
        if draw(st.booleans()):
            data["description"] = draw(st.none() | st.text(no_nul, max_size=50))
        if draw(st.booleans()):
            data["quantity"] = draw(st.none() | ints(min_value=0, max_value=MAX_QUANTITY))
        event["data"] = data
    elif kind == "product.deleted":
        event["version"] = draw(versions)
        if draw(st.booleans()):
            event["data"] = draw(st.dictionaries(st.text(max_size=4), json_values, max_size=2))
    else:
        delta = draw(ints(min_value=-MAX_QUANTITY, max_value=MAX_QUANTITY).filter(bool))
        event["data"] = {"delta": delta}
        if draw(st.booleans()):
            event["data"]["reason"] = draw(st.none() | st.text(no_nul, max_size=50))
        if draw(st.booleans()):
            event["version"] = draw(st.none() | versions)
    if draw(st.booleans()):  # tolerant reader: extra fields at any level are ignored
        target = event if draw(st.booleans()) or "data" not in event else event["data"]
        target[draw(st.sampled_from(["extra", "schema", "x-trace"]))] = draw(json_values)
    return event


# -- mutations of valid events ---------------------------------------------------------------

MAX = 2**31 - 1
EDGE_VALUES: list[Any] = [
    # types
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    1e2,
    "1",
    "",
    [],
    {},
    {"a": 1},
    [1],
    # integer bounds
    MAX,
    MAX + 1,
    -MAX,
    -MAX - 1,
    2**63 - 1,
    2**63,
    -(2**63),
    0.0,
    -0.0,
    # prices
    "1_0",
    " 1.00",
    "1.00 ",
    "abc",
    "24.999",
    "24.99",
    "-1",
    "+1",
    "1e2",
    "1E2",
    "0",
    "0.00",
    "00.5",
    ".5",
    "1.",
    "9999999999.99",
    "10000000000",
    "10000000000.00",
    "NaN",
    "Infinity",
    "\uff11.00",
    "1.00\n",
    24.99,
    24.999,
    0.5,
    0.29,
    24.9,
    100.0,
    0.1 + 0.2,
    0.001,
    5e-324,
    -0.01,
    9999999999.99,
    9999999999.994,
    9999999999,
    10_000_000_000,
    1e11,
    # timestamps
    "2026-01-01T09:00:00",
    "2026-01-01T09:00:00+00:00",
    "2026-01-01t09:00:00z",
    "2026-01-01 09:00:00Z",
    "2026-01-01T09:00:00.123456789Z",
    "2026-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:59:60Z",
    "2026-01-01T09:00:00+24:00",
    "2026-01-01T09:00:00+23:59",
    "2026-01-01T09:00:00+0100",
    "0000-01-01T00:00:00Z",
    "2026-01-01T09:00:00Z\n",
    "2026-01-01",
    1767258000,
    # uuids
    "0b7e7f1e-3f0c-4d35-9a55-3c1f0f2b6a01",
    "0B7E7F1E-3F0C-4D35-9A55-3C1F0F2B6A01",
    "0b7e7f1e3f0c4d359a553c1f0f2b6a01",
    "{0b7e7f1e-3f0c-4d35-9a55-3c1f0f2b6a01}",
    "urn:uuid:0b7e7f1e-3f0c-4d35-9a55-3c1f0f2b6a01",
    "0b7e7f1e-3f0c-4d35-9a55-3c1f0f2b6a0g",
    # text
    "a\x00b",
    "\x00",
    "x" * 255,
    "x" * 256,
    "x" * 1000,
    "x" * 1001,
    # event types
    "product.upserted",
    "product.deleted",
    "stock.adjusted",
    "product.renamed",
    "PRODUCT.UPSERTED",
    "product.upserted ",
]
FIELDS = [
    ("event_id",),
    ("event_type",),
    ("occurred_at",),
    ("product_id",),
    ("version",),
    ("data",),
    ("data", "name"),
    ("data", "description"),
    ("data", "price"),
    ("data", "quantity"),
    ("data", "delta"),
    ("data", "reason"),
]


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    event = draw(valid_events())
    for _ in range(draw(ints(min_value=1, max_value=3))):
        path = draw(st.sampled_from(FIELDS))
        parent = event if len(path) == 1 else event.get("data")
        if not isinstance(parent, dict):
            continue
        how = draw(st.sampled_from(["edge", "edge", "edge", "random", "delete"]))
        if how == "delete":
            parent.pop(path[-1], None)
        elif how == "edge":
            parent[path[-1]] = deepcopy(draw(st.sampled_from(EDGE_VALUES)))  # never shared
        else:
            parent[path[-1]] = draw(json_values)
    if draw(st.integers(min_value=0, max_value=30)) == 0:  # not an object at all
        return draw(json_values)
    return event


EXAMPLES = int(os.environ.get("SCHEMA_AGREEMENT_EXAMPLES", "1000"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(valid_events())
def test_valid_events_pass_both(event: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(event), list(VALIDATOR.iter_errors(event))[:2]
    assert service_accepts(event) == (True, "")


@SETTINGS
@given(mutated_events())
def test_schema_and_service_agree_on_mutated_events(document: Any) -> None:
    assert_agree(document)


BASE = {
    "event_id": "0b7e7f1e-3f0c-4d35-9a55-3c1f0f2b6a01",
    "event_type": "product.upserted",
    "occurred_at": "2026-01-01T09:00:00+00:00",
    "product_id": 1,
    "version": 1,
    "data": {"name": "Espresso beans 1kg", "price": "24.90"},
}
ADJUST = BASE | {"event_type": "stock.adjusted", "data": {"delta": 0}}


def _with(**data: Any) -> dict[str, Any]:
    return BASE | {"data": BASE["data"] | data}


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(ADJUST, id="delta-0"),
        pytest.param(_with(price="abc"), id="price-abc"),
        pytest.param(_with(price="24.999"), id="price-string-24.999"),
        pytest.param(_with(price="-1"), id="price-minus-1"),
        pytest.param(BASE | {"occurred_at": "2026-01-01T09:00:00"}, id="no-offset"),
        pytest.param(_with(price="1_0"), id="price-1_0"),
        pytest.param(_with(price=" 1.00"), id="price-blank-1.00"),
        pytest.param(_with(price="1e2"), id="price-1e2"),
        pytest.param(_with(name="a\x00b"), id="nul"),
        pytest.param(BASE | {"event_type": "product.renamed"}, id="unknown-type"),
    ],
)
def test_what_the_old_schema_let_through_is_refused_by_both(event: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(event)
    assert service_accepts(event)[0] is False


# Numeric prices, valid and not: in range or out, on the cent or between cents, as they come
# out of a float computation, and any float or integer at all.
numeric_prices = (
    st.integers(min_value=-(10**12), max_value=10**12).map(lambda cents: cents / 100)
    | st.integers(min_value=-(10**13), max_value=10**13).map(lambda mills: mills / 1000)
    | st.integers(min_value=-(10**11), max_value=10**11)
    | st.floats(min_value=-1, max_value=2e10, allow_nan=False)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([24.9, 0.29, 1e2, 24.999, -1, 1e11, 0.1 + 0.2, -0.0, 9999999999.99])
)


@SETTINGS
@given(valid_events().filter(lambda e: e["event_type"] == "product.upserted"), numeric_prices)
def test_schema_and_service_agree_on_numeric_prices(
    event: dict[str, Any], price: int | float
) -> None:
    event["data"]["price"] = price
    assert_agree(event)


@pytest.mark.parametrize("price", [24.9, 0.29, 1e2, 0, -0.0, 9999999999.99, 1234567.5])
def test_a_numeric_price_of_at_most_2_decimals_passes_both(price: float) -> None:
    """0.29 too: the schema says no `multipleOf: 0.01`, which validators judge in binary."""
    assert VALIDATOR.is_valid(_with(price=price))
    assert service_accepts(_with(price=price)) == (True, "")


@pytest.mark.parametrize("price", [24.999, 0.1 + 0.2, 0.001])
def test_a_numeric_price_of_more_decimals_is_the_named_exception(price: float) -> None:
    assert VALIDATOR.is_valid(_with(price=price))  # the schema checks only its range
    assert _number_decimal_places(_with(price=price))
    accepted, message = service_accepts(_with(price=price))
    assert not accepted and "price: must have at most 2 decimal places" in message


@pytest.mark.parametrize("price", [-1, -0.01, 1e11, 10_000_000_000, True, None])
def test_a_numeric_price_out_of_range_is_refused_by_both(price: Any) -> None:
    assert not VALIDATOR.is_valid(_with(price=price))
    assert service_accepts(_with(price=price))[0] is False


def test_an_integral_float_is_the_named_exception() -> None:
    event = BASE | {"product_id": 1.0}

    assert VALIDATOR.is_valid(event)  # JSON Schema: 1.0 is an integer
    accepted, message = service_accepts(event)
    assert not accepted and "product_id" in message and "integer" in message


@pytest.mark.parametrize(
    ("event", "path"),
    [
        (_with(price="24.999"), ["data", "price"]),
        (ADJUST, ["data", "delta"]),
        (BASE | {"occurred_at": "2026-01-01T09:00:00"}, ["occurred_at"]),
        (BASE | {"event_type": "product.renamed"}, ["event_type"]),
    ],
)
def test_a_standard_validator_names_the_wrong_field(event: dict[str, Any], path: list[str]) -> None:
    """Not only "is not valid under any of the given schemas": the event type chooses its
    schema, so the error is about the field."""
    errors = list(VALIDATOR.iter_errors(event))
    assert errors and {tuple(error.absolute_path) for error in errors} == {tuple(path)}
