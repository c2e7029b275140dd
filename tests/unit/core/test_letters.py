"""Dead-letter headers: the original headers exactly, then the sink's five."""

from __future__ import annotations

import pytest

from service.core.domain import Reason
from service.core.letters import DeadLetter, original_headers
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
    with pytest.raises(
        ValueError,
        match=r"^not a dead letter of this sink: its last headers are not error\.\*$",
    ):
        original_headers([("error.reason", b"x")])


def test_header_names_are_sent_as_utf8_with_undecodable_bytes_replaced() -> None:
    """A name that was not UTF-8 arrives with surrogate escapes (lenient_fetch.py): each
    invalid byte becomes U+FFFD; valid non-ASCII names pass unchanged."""
    headers: list[tuple[str, bytes | None]] = [
        ("caf\u00e9", b"1"),
        ("x-\udcff\udcfe-\u00e9", b"2"),
        ("plain", None),
    ]
    letter = DeadLetter(SimpleRecord("t", 0, 0, None, None, headers), Reason.INVALID_JSON, "m")
    assert letter.headers()[:3] == [
        ("caf\u00e9", b"1"),
        ("x-\ufffd\ufffd-\u00e9", b"2"),
        ("plain", None),
    ]
