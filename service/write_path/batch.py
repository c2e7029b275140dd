"""A batch as the write path walks it: its records, their decoded items, and what is known
of its partitions (runs and first offsets), worked out once when the batch is formed."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from service.core.decoding import Unusable
from service.core.domain import Event
from service.core.records import Record, Run, TopicAndPartition, first_offsets, partition_runs


@dataclass(frozen=True, slots=True)
class Batch:
    records: Sequence[Record]
    decoded: Sequence[Event | Unusable]
    runs: Sequence[Run]
    # The lowest offset of each partition in the batch.
    first: dict[TopicAndPartition, int]

    @classmethod
    def of(cls, records: Sequence[Record], decoded: Sequence[Event | Unusable]) -> Batch:
        runs = partition_runs(records)
        return cls(records, decoded, runs, first_offsets(records, runs))

    def __len__(self) -> int:
        return len(self.records)

    def size(self, tp: TopicAndPartition) -> int:
        """How many records of `tp` the batch holds."""
        return sum(run.stop - run.start for run in self.runs if run.tp == tp)

    def without(self, tps: Collection[TopicAndPartition]) -> Batch:
        """The batch without the records of `tps`."""
        if not tps:
            return self
        keep = [i for i, r in enumerate(self.records) if (r.topic, r.partition) not in tps]
        return Batch.of([self.records[i] for i in keep], [self.decoded[i] for i in keep])

    def head(self, count: int) -> Batch:
        """The first `count` records."""
        if count >= len(self.records):
            return self
        return Batch.of(self.records[:count], self.decoded[:count])

    def tail(self, count: int) -> Batch:
        """The records after the first `count`."""
        return Batch.of(self.records[count:], self.decoded[count:])

    def halves(self) -> tuple[Batch, Batch]:
        """The first and the second half of the batch, in order."""
        middle = len(self.records) // 2
        return self.head(middle), self.tail(middle)
