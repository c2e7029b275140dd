"""The dead-letter format, written (`DeadLetter`) and read (`Letter`): pure, no I/O.

A dead letter is the original record's key and value with its original headers, followed by
the sink's `error.*` and `original.*` headers (and, for a letter cut to fit the dead-letter
topic, the cut's headers: service/core/letter_fit.py). Replaying it publishes the
key, the value and the original headers again (never the sink's), plus `replayed.from`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from service.core.domain import Reason
from service.core.letter_fit import CUT_HEADERS, Form, Header, fit
from service.core.records import Record

ERROR_HEADERS = (
    "error.reason",
    "error.message",
    "original.topic",
    "original.partition",
    "original.offset",
)
MAX_MESSAGE_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: Reason
    message: str

    def headers(self) -> list[Header]:
        """The original headers exactly as they came (bytes or None, duplicates and names
        like the sink's own kept, in order), then the sink's five: a reader takes the last
        header of a name (Kafka's `lastHeader`), and `original_headers` gives the rest back.
        The one change: a name that was not UTF-8 (see service/kafka/lenient_fetch.py) cannot
        be sent as it was; each invalid byte becomes U+FFFD."""
        return [*self._original(), *self._sink(MAX_MESSAGE_CHARS)]

    def forms(self, *budgets: int) -> list[Form | None]:
        """For each budget, the letter as it is if its batch fits that many bytes, else cut
        to fit (None if even its smallest form does not)."""
        chars = min(len(self.message), MAX_MESSAGE_CHARS)
        record = self.record
        return fit(record.key, record.value, self._original(), self._sink, chars, budgets)

    def _original(self) -> list[Header]:
        return [(_sendable(name), value) for name, value in self.record.headers]

    def _sink(self, message_chars: int) -> list[Header]:
        return [
            ("error.reason", self.reason.value.encode()),
            ("error.message", self.message[:message_chars].encode("utf-8", "replace")),
            ("original.topic", self.record.topic.encode()),
            ("original.partition", str(self.record.partition).encode()),
            ("original.offset", str(self.record.offset).encode()),
        ]


def _sendable(name: str) -> str:
    """`name` as a producer can encode it: bytes that were not UTF-8 (kept as surrogate
    escapes by lenient_fetch) become U+FFFD."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def original_headers(headers: Sequence[Header]) -> list[Header]:
    """The original record's headers from a dead letter's: all but the sink's last five
    (and, after them, the three of a cut letter; see letter_fit.py: a cut letter may have
    dropped them all)."""
    headers = list(headers)
    if cut_letter(headers):
        headers = headers[: -len(CUT_HEADERS)]
    if [name for name, _ in headers[-len(ERROR_HEADERS) :]] != list(ERROR_HEADERS):
        raise ValueError("not a dead letter of this sink: its last headers are not error.*")
    return headers[: -len(ERROR_HEADERS)]


def cut_letter(headers: Sequence[Header]) -> bool:
    """True for a letter this sink cut to fit (its last headers: the five, then the cut's)."""
    tail = [name for name, _ in headers[-len(ERROR_HEADERS) - len(CUT_HEADERS) :]]
    return tail == [*ERROR_HEADERS, *CUT_HEADERS]


REPLAYED_FROM = "replayed.from"  # "<dlq topic>/<partition>/<offset>" of the replayed letter


class DeadLetterRecord(Record, Protocol):
    """What is read of a DLQ record (aiokafka's ConsumerRecord fits): a record, and when it
    was written."""

    @property
    def timestamp(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Letter:
    """One record of the DLQ topic, with the sink's headers read out."""

    partition: int  # in the DLQ topic
    offset: int  # in the DLQ topic
    timestamp: datetime  # the DLQ record's timestamp: when it was dead-lettered
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    reason: str | None
    message: str
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    cut: str | None = None  # what was cut to fit the DLQ topic (letter_fit.py); None: nothing

    @classmethod
    def of(cls, record: DeadLetterRecord) -> Letter:
        # The sink appends its headers last: where a name repeats, the last value is its own.
        sink = {name: value for name, value in record.headers if name in ERROR_HEADERS}
        return cls(
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            key=record.key,
            value=record.value,
            headers=tuple(record.headers),
            reason=_text(sink.get("error.reason")),
            message=_text(sink.get("error.message")) or "",
            original_topic=_text(sink.get("original.topic")),
            original_partition=_number(sink.get("original.partition")),
            original_offset=_number(sink.get("original.offset")),
            cut=_text(record.headers[-3][1]) if cut_letter(record.headers) else None,
        )

    def replay_headers(self, dlq_topic: str) -> list[tuple[str, bytes | None]]:
        """The original record's headers, in order, then `replayed.from`."""
        try:
            original = original_headers(self.headers)  # exactly the record's, sink names too
        except ValueError:  # not written by this sink: drop whatever looks like its headers
            original = [(name, value) for name, value in self.headers if name not in ERROR_HEADERS]
        kept = [(name, value) for name, value in original if name != REPLAYED_FROM]
        return [*kept, (REPLAYED_FROM, f"{dlq_topic}/{self.partition}/{self.offset}".encode())]

    def describe(self, dlq_topic: str, width: int = 120) -> str:
        """One line for an operator: where it is, when, where it came from, why."""
        origin = (
            f"{self.original_topic}[{self.original_partition}]@{self.original_offset}"
            if self.original_topic is not None
            else "(no original.* headers)"
        )
        message = self.message if len(self.message) <= width else self.message[: width - 1] + "…"
        cut = f" (cut: {self.cut})" if self.cut is not None else ""
        return (
            f"{dlq_topic}[{self.partition}]@{self.offset} "
            f"{self.timestamp.isoformat(timespec='seconds')} from {origin} "
            f"{self.reason or '(no reason)'}{cut}: {message}"
        )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _number(value: bytes | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
