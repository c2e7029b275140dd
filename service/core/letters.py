"""What a dead letter says, and what its replay carries: pure, no I/O.

A dead letter (see dead_letter.py) is the original record's key and value with its original
headers, followed by the sink's `error.*` and `original.*` headers. Replaying it publishes the
key, the value and the original headers again (never the sink's), plus `replayed.from`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from service.core.records import Record
from service.kafka.dead_letters import ERROR_HEADERS, cut_letter, original_headers

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
