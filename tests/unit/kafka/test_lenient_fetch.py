"""Record sets whose header keys are not UTF-8: aiokafka stops on them, the lenient reader
hands every record on (service/kafka/lenient_fetch.py)."""

from __future__ import annotations

import pytest
from aiokafka.record.memory_records import MemoryRecords

from service.core.decoding import record_size
from service.core.domain import Reason
from service.core.letters import DeadLetter
from service.kafka.lenient_fetch import LenientMemoryRecords
from tests.support.record_batches import BAD_KEY, batch, gzipped
from tests.support.write_path import SimpleRecord


def unpack(records: object) -> list[tuple[int, bytes | None, list[tuple[str, bytes | None]]]]:
    found = []
    while records.has_next():  # type: ignore[attr-defined]
        next_batch = records.next_batch()  # type: ignore[attr-defined]
        assert next_batch.validate_crc()
        found.extend((r.offset, r.value, list(r.headers)) for r in next_batch)
    return found


STREAM = (
    batch(0, [(b"7", b"a", [("trace", b"1")]), (b"7", b"b", [])])
    + batch(
        2,
        [
            (b"7", b"c", [("ok", b"x")]),
            (b"7", b"d", [("QQQ", b"v"), ("ok", None)]),
            (b"7", b"e", []),
        ],
    )
    + gzipped(batch(5, [(b"7", b"f", [("QQQ", b"w")])]))
    + batch(6, [(b"7", b"g", [])])
)
ESCAPED = BAD_KEY.decode("utf-8", "surrogateescape")


def test_aiokafka_alone_stops_at_the_first_such_key() -> None:
    with pytest.raises(UnicodeDecodeError):
        unpack(MemoryRecords(STREAM))


def test_every_record_comes_through_in_order_with_the_key_bytes_kept() -> None:
    assert unpack(LenientMemoryRecords(STREAM)) == [
        (0, b"a", [("trace", b"1")]),
        (1, b"b", []),
        (2, b"c", [("ok", b"x")]),
        (3, b"d", [(ESCAPED, b"v"), ("ok", None)]),
        (4, b"e", []),
        (5, b"f", [(ESCAPED, b"w")]),
        (6, b"g", []),
    ]
    assert ESCAPED.encode("utf-8", "surrogateescape") == BAD_KEY


def test_the_batches_attributes_are_aiokafkas() -> None:
    records = LenientMemoryRecords(STREAM)
    first = records.next_batch()
    assert (first.base_offset, first.next_offset, first.is_control_batch) == (0, 2, False)
    assert records.size_in_bytes() == len(STREAM)


def test_its_size_counts_the_original_bytes_and_its_letter_can_be_sent() -> None:
    record = SimpleRecord("t", 0, 3, b"7", b"{}", ((ESCAPED, b"v"),))
    assert record_size(record) == 1 + 2 + len(BAD_KEY) + 1
    letter = DeadLetter(record, Reason.INVALID_EVENT, "bad")
    name, value = letter.headers()[0]
    assert (name, value) == ("\ufffd\ufffd\x00", b"v")
    name.encode("utf-8")  # what the producer does with a header name
