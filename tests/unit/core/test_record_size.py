"""Records over MAX_RECORD_BYTES are dead-lettered as record_too_large without being parsed."""

from __future__ import annotations

from service.core.decoding import Unusable, decode, record_size
from service.core.domain import Reason
from testbed.events import record, upsert
from tests.support.write_path import SimpleRecord


def test_the_size_counts_key_value_and_headers() -> None:
    headers = [("trace", b"12345"), ("é", None)]
    assert record_size(SimpleRecord("t", 0, 0, b"12", b"abc", headers)) == 2 + 3 + 5 + 5 + 2
    assert record_size(SimpleRecord("t", 0, 0, None, None)) == 0


def test_a_record_at_the_limit_is_parsed_and_one_byte_more_is_not() -> None:
    key, value = record(upsert(7, 1))
    limit = len(key) + len(value)
    assert not isinstance(decode(SimpleRecord("t", 0, 0, key, value), limit), Unusable)
    too_large = decode(SimpleRecord("t", 0, 0, key, value, [("h", b"")]), limit)
    assert isinstance(too_large, Unusable)
    assert too_large.reason is Reason.RECORD_TOO_LARGE
    assert f"{limit + 1} bytes" in too_large.message and "MAX_RECORD_BYTES" in too_large.message


def test_an_oversized_record_is_not_parsed() -> None:
    """Invalid JSON over the limit is too large, not invalid_json: the parser never saw it."""
    item = decode(SimpleRecord("t", 0, 0, b"1", b"{" * 5000), max_record_bytes=4096)
    assert isinstance(item, Unusable) and item.reason is Reason.RECORD_TOO_LARGE


def test_without_headers_the_size_is_the_key_and_value_alone() -> None:
    """The common record (no headers) is sized without the header loop: the same sum."""
    _, value = record(upsert(7, 1))
    assert not isinstance(decode(SimpleRecord("t", 0, 0, None, value), len(value)), Unusable)
    over = decode(SimpleRecord("t", 0, 0, None, value), len(value) - 1)
    assert isinstance(over, Unusable) and over.reason is Reason.RECORD_TOO_LARGE
    assert f"record is {len(value)} bytes" in over.message
    # A tombstone is its key alone: within the limit it reaches the parser, which refuses it.
    tombstone = decode(SimpleRecord("t", 0, 0, b"12", None), 2)
    assert isinstance(tombstone, Unusable) and tombstone.reason is Reason.INVALID_JSON
    assert decode(SimpleRecord("t", 0, 0, b"12", None), 1) == Unusable(
        Reason.RECORD_TOO_LARGE,
        "record is 2 bytes (key + value + headers), over MAX_RECORD_BYTES=1; it was not parsed. "
        "Publish smaller events, or raise MAX_RECORD_BYTES if events this large are intended",
    )
