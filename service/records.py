"""What the write path needs of a Kafka record (aiokafka's ConsumerRecord fits)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class SimpleRecord:
    """A plain record, for tests and tools."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


def first_offsets(records: Iterable[Record]) -> dict[tuple[str, int], int]:
    """The lowest offset of each (topic, partition) among `records`."""
    first: dict[tuple[str, int], int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        if record.offset < first.get(tp, record.offset + 1):
            first[tp] = record.offset
    return first
