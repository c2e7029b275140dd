"""What the write path remembers of the partitions it sought back.

A batch that starts past its partition's stored position means records in between were not
delivered: nothing of the partition is written and the consumer seeks back to the stored
position (a rewind). Two things are then remembered per partition, both here:

- where it was sought to: if the batch after the seek still starts past that position, the
  offsets in between are not in the log, a gap for the partition guard to judge, rather than
  a reason to seek back again (service/write_path/admission.py);
- the fence, the first offset of the records abandoned: batches fetched before the seek
  continue past it and are dropped (they come again), while the refetch starts at or before
  it and lifts the fence (service/write_path/overlap.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.core.records import TopicAndPartition


@dataclass(frozen=True, slots=True)
class Rewind:
    """Seek the partition back `to` its stored position; its records from `fence` on were
    abandoned."""

    to: int
    fence: int


class Rewinds:
    def __init__(self) -> None:
        self._sought: dict[TopicAndPartition, int] = {}
        self._fences: dict[TopicAndPartition, int] = {}

    def remember(self, rewinds: Mapping[TopicAndPartition, Rewind]) -> None:
        """A batch asking for these rewinds has committed (the consumer seeks next)."""
        for tp, rewind in rewinds.items():
            self._sought[tp] = rewind.to
            self._fences[tp] = rewind.fence

    def settle(self, written: Mapping[TopicAndPartition, int]) -> None:
        """A batch has committed, writing each partition of `written` up to that next
        position: a partition written past where it was sought to expects no gap there any
        more (its stored position moved on, so the memory could never match it again), and
        the batches after it need no look at the log start."""
        for tp, following in written.items():
            to = self._sought.get(tp)
            if to is not None and following > to:
                del self._sought[tp]

    def sought(self, first: Mapping[TopicAndPartition, int]) -> dict[TopicAndPartition, int]:
        """Of the partitions starting at `first`, those sought back to a position the batch
        starts past: where they were sought to (a gap is expected there)."""
        return {
            tp: to
            for tp, offset in first.items()
            if (to := self._sought.get(tp)) is not None and offset > to
        }

    def sought_to(self, tp: TopicAndPartition) -> int | None:
        return self._sought.get(tp)

    def fenced(self, first: Mapping[TopicAndPartition, int]) -> set[TopicAndPartition]:
        """The partitions of a batch starting at `first` whose records were fetched before
        their seek back; a partition fetched again after it has its fence lifted."""
        stale = set()
        for tp, offset in first.items():
            fence = self._fences.get(tp)
            if fence is None:
                continue
            if offset <= fence:
                del self._fences[tp]  # fetched again after the seek
            else:
                stale.add(tp)  # fetched before the seek: it comes again
        return stale

    def forget(self, tp: TopicAndPartition) -> None:
        """The partition was sought to its stored position from outside the write path (a
        resume after a check): what is remembered of its rewinds no longer describes what
        the consumer fetches. Forgetting is always safe: a batch past the stored position is
        then rewound again, never taken for a gap."""
        self._sought.pop(tp, None)
        self._fences.pop(tp, None)
