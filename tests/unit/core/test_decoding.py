"""decode's verdicts read in full: what a person finds in a dead letter's error.message must
name the problem and the fix, word for word as documented here."""

from __future__ import annotations

import json

import pytest

from service.core.contract import InvalidEvent, InvalidJson, parse_event
from service.core.decoding import Unusable, decode
from service.core.domain import Reason
from tests.support.write_path import SimpleRecord


def test_a_record_over_the_limit_says_how_big_it_is_and_what_to_do() -> None:
    item = decode(SimpleRecord("t", 0, 0, b"1", b"x" * 20, [("h", b"abc")]), max_record_bytes=10)
    assert item == Unusable(
        Reason.RECORD_TOO_LARGE,
        "record is 25 bytes (key + value + headers), over MAX_RECORD_BYTES=10; it was not "
        "parsed. Publish smaller events, or raise MAX_RECORD_BYTES if events this large are "
        "intended",
    )


@pytest.mark.parametrize(
    ("value", "reason", "error"),
    [
        (b"{not json", Reason.INVALID_JSON, InvalidJson),
        (None, Reason.INVALID_JSON, InvalidJson),
        (b'{"event_type": "product.upserted"}', Reason.INVALID_EVENT, InvalidEvent),
    ],
)
def test_the_parsers_message_is_the_letters_message(
    value: bytes | None, reason: Reason, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        parse_event(value)
    assert str(raised.value)  # the parser explains itself ...
    # ... and decode passes that explanation on unchanged
    assert decode(SimpleRecord("t", 0, 0, None, value)) == Unusable(reason, str(raised.value))


def test_a_key_naming_another_product_shows_the_key_and_the_fix() -> None:
    key = b"9" * 45  # shown up to 40 bytes
    value = json.dumps(
        {
            "event_id": "6a1f0e4c-2f55-4f0e-9d8b-3c2d7a9b1e01",
            "event_type": "product.upserted",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "product_id": 42,
            "version": 1,
            "data": {"name": "thing", "price": "9.99"},
        }
    ).encode()
    assert decode(SimpleRecord("t", 0, 0, key, value)) == Unusable(
        Reason.INVALID_EVENT,
        f"record key {b'9' * 40!r} does not match product_id 42; publish each event with its "
        "product id (decimal) as the key so a product's events stay in order",
    )


UPSERT_5 = json.dumps(
    {
        "event_id": "6a1f0e4c-2f55-4f0e-9d8b-3c2d7a9b1e01",
        "event_type": "product.upserted",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "product_id": 5,
        "version": 1,
        "data": {"name": "thing", "price": "9.99"},
    }
).encode()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([], id="no-header-is-v1"),
        pytest.param([("contract-version", b"1")], id="v1"),
        pytest.param([("contract-version", b"2"), ("contract-version", b"1")], id="last-counts"),
        pytest.param([("trace", b"\xff"), ("Contract-Version", b"9")], id="other-names"),
    ],
)
def test_a_record_of_version_1_or_without_a_version_is_read(
    headers: list[tuple[str, bytes | None]],
) -> None:
    item = decode(SimpleRecord("t", 0, 0, b"5", UPSERT_5, headers))
    assert not isinstance(item, Unusable) and item.product_id == 5


@pytest.mark.parametrize(
    ("headers", "shown"),
    [
        ([("contract-version", b"2")], "'2'"),
        ([("contract-version", b"1"), ("contract-version", b"v2")], "'v2'"),
        ([("contract-version", b"")], "''"),
        ([("contract-version", b" 1")], "' 1'"),
        ([("contract-version", None)], "null"),
        ([("contract-version", b"\xff")], "'\ufffd'"),
        pytest.param([("contract-version", b"9" * 45)], repr("9" * 40), id="shown-up-to-40"),
    ],
)
def test_an_unknown_contract_version_is_a_letter_of_its_own_reason(
    headers: list[tuple[str, bytes | None]], shown: str
) -> None:
    assert decode(SimpleRecord("t", 0, 0, b"5", UPSERT_5, headers)) == Unusable(
        Reason.UNKNOWN_CONTRACT_VERSION,
        f"header contract-version={shown} names a contract version this service does not "
        "read (it reads: 1); it was not parsed. Publish it as a version the service reads, "
        "or replay it once the service is upgraded to one that reads this version",
    )


def test_an_unknown_version_is_not_parsed_as_v1() -> None:
    """A v2 value may be anything v1 calls invalid: the version is decided first."""
    item = decode(SimpleRecord("t", 0, 0, b"5", b"{not v1 json", [("contract-version", b"2")]))
    assert isinstance(item, Unusable) and item.reason == Reason.UNKNOWN_CONTRACT_VERSION
