"""The form a dead letter is published in (service/core/letter_fit.py): exact sizes, and for every
letter and budget the largest form that fits, cut in the documented order."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import letter_fit
from service.core.domain import Reason
from service.core.letter_fit import (
    CUT_HEADERS,
    SMALLEST_BUDGET,
    Form,
    Header,
    batch_size,
    budgets,
    varint_size,
)
from service.core.letters import (
    ERROR_HEADERS,
    MAX_MESSAGE_CHARS,
    DeadLetter,
    cut_letter,
    original_headers,
)
from service.kafka.topics import DLQ_MAX_MESSAGE_BYTES
from tests.support.write_path import SimpleRecord

names = st.text(min_size=0, max_size=12)
optional_bytes = st.one_of(st.none(), st.binary(max_size=3000))
headers = st.lists(st.tuples(names, optional_bytes), max_size=6)
messages = st.text(max_size=2 * MAX_MESSAGE_CHARS)


def built(key: bytes | None, value: bytes | None, headers: list[Header]) -> int:
    """Bytes of the batch aiokafka's producer builds for this one record, uncompressed."""
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    builder.append(0, timestamp=1_700_000_000_000, key=key, value=value, headers=headers)
    return len(builder.build())


@given(st.one_of(st.none(), st.binary(max_size=300)), optional_bytes, headers)
def test_batch_size_is_what_the_producer_builds(
    key: bytes | None, value: bytes | None, hs: list[Header]
) -> None:
    assert batch_size(key, value, hs) == built(key, value, hs)


@pytest.mark.parametrize("size", [0, 63, 64, 8191, 8192, 1 << 20, (1 << 21) - 1, 1 << 21])
def test_batch_size_counts_every_varint_width(size: int) -> None:
    value = b"v" * size
    assert batch_size(b"k", value, [("h", value)]) == built(b"k", value, [("h", value)])


def test_varint_sizes() -> None:
    assert [varint_size(n) for n in (0, -1, 63, 64, -64, -65, 8191, 8192)] == [
        1,
        1,
        1,
        2,
        1,
        2,
        2,
        3,
    ]


def test_budgets_shrink_by_four_down_to_the_smallest() -> None:
    assert budgets(DLQ_MAX_MESSAGE_BYTES) == [
        4 << 20,
        1 << 20,
        256 << 10,
        64 << 10,
        16 << 10,
        4 << 10,
        1 << 10,
    ]
    assert budgets(5000) == [5000, 1250, 1024]
    assert budgets(4000) == [4000, 1024]
    assert budgets(SMALLEST_BUDGET) == [SMALLEST_BUDGET]


def _letter(key: bytes | None, value: bytes | None, hs: list[Header], message: str) -> DeadLetter:
    return DeadLetter(SimpleRecord("events", 3, 77, key, value, hs), Reason.INVALID_EVENT, message)


def _check(letter: DeadLetter, form: Form | None, budget: int) -> None:
    """Everything a form promises, against the letter it came from."""
    record = letter.record
    whole = letter.headers()
    if batch_size(record.key, record.value, whole) <= budget:
        assert form == Form(record.key, record.value, tuple(whole), (), form.size if form else 0)
        assert form is not None and form.size == built(record.key, record.value, whole)
        return
    if form is None:  # only when not even an empty key and message fit
        smallest = _letter(None if record.key is None else b"", None, [], "").forms(1 << 40)[0]
        assert smallest is not None and smallest.size + 150 > budget
        return
    hs = list(form.headers)
    assert form.size == batch_size(form.key, form.value, hs) == built(form.key, form.value, hs)
    assert form.size <= budget
    assert form.cut and set(form.cut) <= {"value", "headers", "key", "message"}
    assert cut_letter(hs)
    assert [n for n, _ in hs[-8:]] == [*ERROR_HEADERS, *CUT_HEADERS]
    marks = dict(hs[-3:])
    assert marks["letter.cut"] == ",".join(form.cut).encode()
    value = record.value
    if value is None:
        assert form.value is None and marks["original.value.bytes"] is None
    else:
        assert form.value is not None and value.startswith(form.value)
        assert marks["original.value.bytes"] == str(len(value)).encode()
        assert marks["original.value.sha256"] == hashlib.sha256(value).hexdigest().encode()
        assert ("value" in form.cut) == (len(form.value) < len(value))
    sink = dict(hs[-8:-3])
    assert sink["original.topic"] == b"events" and sink["original.offset"] == b"77"
    assert sink["original.partition"] == b"3"
    kept = original_headers(hs)
    assert kept == ([] if "headers" in form.cut else list(letter.headers()[:-5]))
    assert ("key" in form.cut) == (form.key != record.key)
    if record.key is not None:
        assert form.key is not None and record.key.startswith(form.key)
    # The order parts are given up in: a part is cut only if the form that keeps it whole,
    # with every part before it given up entirely, does not fit.
    sink_whole, values = letter.headers()[-5:], dict(hs[-2:])
    empty = None if value is None else b""

    def without(parts: list[str], key: bytes | None, kept: list[Header]) -> int:
        mark = ("letter.cut", ",".join(parts).encode())
        return batch_size(key, empty, [*kept, *sink_whole, mark, *values.items()])

    gone = [part for part in ("value",) if value]
    if "headers" in form.cut:
        assert without(gone, record.key, list(letter.headers()[:-5])) > budget
        gone.append("headers")
    if "key" in form.cut:
        assert without(gone, record.key, []) > budget
        gone.append("key")
    if "message" in form.cut:
        assert not form.key
        assert without(gone, form.key, []) > budget
    # Largest: one more byte of the value would not fit (once the key or the message is cut,
    # the value is already given up whole).
    if "value" in form.cut and {"key", "message"}.isdisjoint(form.cut):
        assert value is not None and form.value is not None
        assert batch_size(form.key, value[: len(form.value) + 1], hs) > budget


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.none(), st.binary(max_size=3000)),
    optional_bytes,
    headers,
    messages,
    st.integers(min_value=0, max_value=12_000),
)
def test_every_form_fits_its_budget_and_keeps_all_it_can(
    key: bytes | None, value: bytes | None, hs: list[Header], message: str, budget: int
) -> None:
    letter = _letter(key, value, hs, message)
    _check(letter, letter.forms(budget)[0], budget)


@pytest.mark.parametrize("budget", budgets(DLQ_MAX_MESSAGE_BYTES))
def test_a_record_that_inflated_to_6_mb_is_cut_to_each_budget(budget: int) -> None:
    value = bytes(6_000_000)
    letter = _letter(b"7", value, [("trace", b"t")], "record is 6000000 bytes, over ...")
    form = letter.forms(budget)[0]
    _check(letter, form, budget)
    assert form is not None and form.cut == ("value",)
    assert budget - 8 <= form.size <= budget  # as much of the value as fits (varint steps)


def test_headers_go_after_the_value_then_the_key_then_the_message() -> None:
    letter = _letter(b"k" * 5000, b"v" * 3000, [("big", b"h" * 5000)], "m" * 2000)
    for budget, cut in [
        (20_000, ()),
        (14_000, ("value",)),
        (11_000, ("headers",)),  # without the headers the whole value fits again
        (9_000, ("value", "headers")),
        (4_000, ("value", "headers", "key")),
        (1_000, ("value", "headers", "key", "message")),
    ]:
        form = letter.forms(budget)[0]
        _check(letter, form, budget)
        assert form is not None and form.cut == cut, (budget, form.cut)
    assert letter.forms(100)[0] is None  # not even the sink's headers fit


def test_dropping_the_headers_can_leave_the_whole_value() -> None:
    letter = _letter(b"1", b"v" * 100, [("big", b"h" * 5000)], "bad")
    form = letter.forms(1000)[0]
    _check(letter, form, 1000)
    assert form is not None and form.cut == ("headers",) and form.value == b"v" * 100


def test_a_letter_that_fits_is_exactly_the_records_bytes_and_headers() -> None:
    letter = _letter(b"1", b"{}", [("h", None)], "bad")
    form = letter.forms(DLQ_MAX_MESSAGE_BYTES)[0]
    assert form is not None and form.cut == ()
    assert (form.key, form.value, list(form.headers)) == (b"1", b"{}", letter.headers())
    assert not cut_letter(letter.headers())


def test_forms_for_many_budgets_hash_the_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ladder of budgets a refused letter goes down (a value may be a gigabyte)."""
    hashed: list[int] = []
    real = hashlib.sha256

    def counting(data: bytes) -> hashlib._Hash:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(letter_fit.hashlib, "sha256", counting)
    letter = _letter(b"7", bytes(300_000), [("trace", b"t")], "too large")
    ladder = budgets(DLQ_MAX_MESSAGE_BYTES)
    forms = letter.forms(*ladder)
    assert hashed == [300_000]
    assert forms == [letter.forms(budget)[0] for budget in ladder]
    assert [form.cut if form else None for form in forms] == [(), (), *[("value",)] * 5]
    hashed.clear()
    assert letter.forms(1 << 20)[0] is not None and hashed == []  # nothing cut: no hash
