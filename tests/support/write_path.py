"""What the tests hand the write path: plain records, an in-memory dead-letter sink, and
`process`, which decodes and writes one batch as the subscriber does (service/app.py through
service/write_path/overlap.py, there with the next batch's decoding overlapped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.core.letters import DeadLetter
from service.core.records import Record
from service.write_path.transaction import BatchReport, Ownership, WritePath


@dataclass(frozen=True, slots=True)
class SimpleRecord:
    """A plain record (service.core.records.Record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = field(default_factory=tuple)


class MemoryDeadLetterSink:
    """Keeps letters in a list (service.kafka.dead_letter_producer.DeadLetterSink)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


async def process(
    write_path: WritePath, records: Sequence[Record], still_owned: Ownership | None = None
) -> BatchReport:
    """Apply a batch exactly once; retries transient failures until it commits.

    `still_owned(topic, partition)` is asked after the partition rows are locked: records
    of a partition this consumer lost in a rebalance are abandoned (the new owner reads
    them again from the stored position) and nothing is written for that partition.
    """
    return await write_path.write(records, await write_path.decode(records), still_owned)
