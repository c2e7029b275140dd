"""How big a dead letter is, and the form of it that fits the dead-letter topic: pure, no I/O.

The broker refuses a record batch larger than the topic's `max.message.bytes`. A letter
carries the original record uncompressed, and a record compressed upstream can inflate far
past any topic's limit (6 MB of zeros are 6 KB of gzip), so a letter may not fit as it is.
It is then cut, giving up, in this order, as little as it must: the value (a prefix is
kept), the original headers (all dropped), the key (a prefix), the error message (a
prefix). A cut letter ends with three more headers after the sink's five (CUT_HEADERS):
what was cut, and the size and SHA-256 of the original value, which is still at
original.topic / original.partition / original.offset while Kafka's retention keeps it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Header = tuple[str, bytes | None]
# Appended after the sink's five headers when a letter was cut.
CUT_HEADERS = ("letter.cut", "original.value.bytes", "original.value.sha256")
# What may be cut, in the order it is given up.
CUT_PARTS = ("value", "headers", "key", "message")
# A v2 record batch: base offset, length, leader epoch, magic, CRC, attributes, last offset
# delta, first and max timestamp, producer id and epoch, base sequence, record count.
BATCH_OVERHEAD = 61
# Budgets tried one after the other when the broker refuses a letter: each a quarter of the
# one before, down to this. A letter this small holds the sink's headers and a short key.
SMALLEST_BUDGET = 1024
SHRINK = 4


@dataclass(frozen=True, slots=True)
class Form:
    """A letter as it is published: `cut` names what was cut (empty: nothing, it is the
    original record with the sink's headers), `size` the bytes of the batch carrying it."""

    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    cut: tuple[str, ...]
    size: int


def varint_size(number: int) -> int:
    """Bytes of `number` as a zigzag varint (Kafka's record fields)."""
    zigzag = (number << 1) ^ (number >> 63)
    return max(1, (zigzag.bit_length() + 6) // 7)


def _length_size(length: int) -> int:
    """varint_size of a length (>= 0): its zigzag is twice it, so one byte holds up to 63 and
    two up to 8191. Every letter's size is counted, most fields are short: the two common
    widths are answered without the general computation."""
    return 1 if length < 64 else 2 if length < 8192 else varint_size(length)


def _field_size(data: bytes | None) -> int:
    if data is None:
        return 1  # varint_size(-1)
    return _length_size(len(data)) + len(data)


def batch_size(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """Bytes of an uncompressed v2 batch holding this record alone: what the broker compares
    with `max.message.bytes` (a producer that does not compress sends a letter so)."""
    body = 3  # attributes, timestamp and offset deltas (one byte each: both deltas are 0)
    body += _field_size(key) + _field_size(value) + _length_size(len(headers))
    for name, data in headers:
        length = len(name) if name.isascii() else len(name.encode("utf-8"))
        body += _length_size(length) + length + _field_size(data)
    return BATCH_OVERHEAD + _length_size(body) + body


def budgets(limit: int) -> list[int]:
    """The sizes to cut a refused letter to, largest first: `limit` (what the dead-letter
    topic is made with), then a quarter each time, down to SMALLEST_BUDGET."""
    found = [limit]
    while found[-1] // SHRINK >= SMALLEST_BUDGET:
        found.append(found[-1] // SHRINK)
    if found[-1] > SMALLEST_BUDGET:
        found.append(SMALLEST_BUDGET)
    return found


def fit(
    key: bytes | None,
    value: bytes | None,
    original: Sequence[Header],
    sink: Callable[[int], list[Header]],
    message_chars: int,
    budgets: Sequence[int],
) -> list[Form | None]:
    """For each budget (bytes), the letter as it is if it fits, else its largest cut form
    that does (None if not even the sink's headers with an empty key and message fit).

    `original`: the record's headers (as sendable); `sink(n)`: the sink's five headers with
    the error message cut to `n` characters; `message_chars`: the message's full length.
    The original value's SHA-256 is computed once, and only if a form is cut."""
    whole = _form(key, value, original, sink(message_chars), ())
    if all(whole.size <= budget for budget in budgets):
        return [whole] * len(budgets)
    marks = _cut_headers(value)
    return [
        whole
        if whole.size <= budget
        else _cut(key, value, original, sink, message_chars, marks, budget)
        for budget in budgets
    ]


def _cut(
    key: bytes | None,
    value: bytes | None,
    original: Sequence[Header],
    sink: Callable[[int], list[Header]],
    message_chars: int,
    marks: list[Header],
    budget: int,
) -> Form | None:
    """The largest cut form of the letter that fits `budget`, or None."""
    value_size = len(value or b"")

    def form(k: bytes | None, kept_value: int, kept: Sequence[Header], chars: int) -> Form:
        gone = (
            ("value", kept_value < value_size),
            ("headers", len(kept) < len(original)),
            ("key", k != key),
            ("message", chars < message_chars),
        )
        cut = tuple(part for part, given_up in gone if given_up)
        v = None if value is None else value[:kept_value]
        mark = ("letter.cut", ",".join(cut).encode())
        return _form(k, v, kept, [*sink(chars), mark, *marks], cut)

    # The value first (all the rest kept), then with the original headers dropped.
    for kept in (original, ()) if original else (original,):

        def with_value(n: int, kept: Sequence[Header] = kept) -> Form:
            return form(key, n, kept, message_chars)

        n = _longest(with_value, value_size, budget)
        if n is not None:
            return with_value(n)
    # No value, no original headers: as much of the key as fits.
    if key:
        n = _longest(lambda n: form(key[:n], 0, (), message_chars), len(key), budget)
        if n is not None:
            return form(key[:n], 0, (), message_chars)
    # Not even an empty key fits beside the message: as much of the message as fits.
    no_key = None if key is None else b""
    n = _longest(lambda n: form(no_key, 0, (), n), message_chars, budget)
    return None if n is None else form(no_key, 0, (), n)


def _longest(make: Callable[[int], Form], most: int, budget: int) -> int | None:
    """The largest n in [0, most] whose form fits `budget` (sizes grow with n), or None."""
    if make(0).size > budget:
        return None
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if make(middle).size <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _cut_headers(value: bytes | None) -> list[Header]:
    """The size and SHA-256 (hex) of the original value (null headers for a null value)."""
    if value is None:
        return [("original.value.bytes", None), ("original.value.sha256", None)]
    digest = hashlib.sha256(value).hexdigest().encode()
    return [("original.value.bytes", str(len(value)).encode()), ("original.value.sha256", digest)]


def _form(
    key: bytes | None,
    value: bytes | None,
    kept: Sequence[Header],
    sink: Sequence[Header],
    cut: tuple[str, ...],
) -> Form:
    headers = (*kept, *sink)
    return Form(key, value, headers, cut, batch_size(key, value, headers))
