"""Dead-letter headers: the original headers exactly, then the sink's five."""

from __future__ import annotations

import pytest

from service.dead_letter import DeadLetter, original_headers
from service.domain import Reason
from tests.support.write_path import SimpleRecord


def test_original_headers_are_kept_exactly_and_the_sinks_come_last() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("error.reason", b"forged"),
        ("x-trace", b"\xff\x00\xfe"),
        ("x-null", None),
        ("dup", b"1"),
        ("dup", b"2"),
        ("original.offset", b"999"),
    ]
    letter = DeadLetter(SimpleRecord("t", 2, 41, b"k", None, headers), Reason.INVALID_JSON, "bad")
    assert letter.headers() == [
        *headers,
        ("error.reason", b"invalid_json"),
        ("error.message", b"bad"),
        ("original.topic", b"t"),
        ("original.partition", b"2"),
        ("original.offset", b"41"),
    ]
    assert dict(letter.headers())["error.reason"] == b"invalid_json"  # the last one wins
    assert original_headers(letter.headers()) == headers


def test_a_message_that_is_not_utf8_clean_is_still_a_header() -> None:
    letter = DeadLetter(SimpleRecord("t", 0, 0, None, None), Reason.INVALID_EVENT, "\udcff x")
    assert dict(letter.headers())["error.message"] == b"? x"


def test_original_headers_refuses_what_is_not_a_dead_letter() -> None:
    with pytest.raises(ValueError, match="not a dead letter"):
        original_headers([("error.reason", b"x")])
