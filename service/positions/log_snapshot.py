"""What the write path needs to know of Kafka about a batch's partitions, gathered before it
locks their stored positions.

The write path locks a batch's `consumer_offsets` rows FOR UPDATE and then decides, per
partition, what of the batch may be written. Nothing it asks while holding those locks may
wait for the broker or act on the consumer: another instance's transaction (a rolling
deploy, a rebalance) would wait for that round trip. So the partition guard is asked once,
before the transaction, and answers with this snapshot; the write path decides on the
snapshot and the locked rows, and the guard acts (pauses, stops, logs) once the transaction
has committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from service.core.position_verdict import lost_in_gap
from service.core.records import TopicAndPartition


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets [stored, first) the consumer did not deliver although it was sought back to
    `stored`: they are not in the log (compaction or transaction markers inside it; below
    the log start, deleted by retention)."""

    stored: int
    first: int
    log_start: int
    log_end: int
    # The guard's answer: move on past the gap (False: the partition is stopped).
    accepted: bool

    @property
    def lost(self) -> range:
        """The offsets of the gap that retention deleted before they were applied."""
        return lost_in_gap(self.stored, self.first, self.log_start)


@dataclass(frozen=True, slots=True)
class LogSnapshot:
    # Partitions nothing of which may be written now (stopped, or waiting for a check).
    held: frozenset[TopicAndPartition] = frozenset()
    # Each partition's log end as the consumer last fetched it (absent: not known yet).
    log_ends: Mapping[TopicAndPartition, int] = field(default_factory=dict)
    # The gaps expected after a seek back, keyed by partition, judged against the log start.
    gaps: Mapping[TopicAndPartition, Gap] = field(default_factory=dict)

    def holding(self, more: frozenset[TopicAndPartition]) -> LogSnapshot:
        """The same snapshot with `more` partitions held too."""
        return LogSnapshot(self.held | more, self.log_ends, self.gaps)
