"""What the write path needs of a Kafka record (aiokafka's ConsumerRecord fits).

Within a batch, the records of one partition appear in offset order (Kafka's guarantee for
a partition; every subset the consumer takes keeps that order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


# A partition as a plain (topic, partition) tuple: a dict key, ordered by topic then number.
# aiokafka's TopicPartition is a NamedTuple of the same shape, so one of those fits too.
TopicAndPartition = tuple[str, int]


def partition_name(tp: TopicAndPartition) -> str:
    """How logs and messages name a partition: `topic[partition]`."""
    return f"{tp[0]}[{tp[1]}]"


def partition_names(tps: Iterable[TopicAndPartition]) -> str:
    """Partitions named in order, separated by commas: `a[0], a[1], b[0]`."""
    return ", ".join(partition_name(tp) for tp in sorted(tps))


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive records of one partition in a batch: `records[start:stop]`."""

    tp: TopicAndPartition
    start: int
    stop: int


def partition_runs(records: Sequence[Record]) -> list[Run]:
    """Split a batch into runs of consecutive records of the same partition (one pass that
    only compares; per-partition work is then done once per run, not once per record)."""
    runs: list[Run] = []
    if not records:
        return runs
    start = 0
    topic, partition = records[0].topic, records[0].partition
    for index, record in enumerate(records):
        if record.partition != partition or record.topic != topic:
            runs.append(Run((topic, partition), start, index))
            topic, partition, start = record.topic, record.partition, index
    runs.append(Run((topic, partition), start, len(records)))
    return runs


def first_offsets(
    records: Sequence[Record], runs: Sequence[Run] | None = None
) -> dict[TopicAndPartition, int]:
    """The lowest offset of each (topic, partition) among `records`: the first record of its
    first run (pass `runs` when the batch is already split)."""
    first: dict[TopicAndPartition, int] = {}
    for run in partition_runs(records) if runs is None else runs:
        offset = records[run.start].offset
        if offset < first.get(run.tp, offset + 1):
            first[run.tp] = offset
    return first
