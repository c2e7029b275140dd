"""What of a batch may be written, decided per partition on the positions locked for it.

Every partition is decided on its own, in this order; one partition's verdict never stops
the others from being looked at:
- revoked: this consumer lost it in a rebalance; the new owner reads its records again from
  the stored position;
- held: the partition guard (or a refused dead letter) stopped it, or it waits for a check;
- log reset: records below the stored position arrived and the log now ends below it: they
  are new records of a new log, not redeliveries of those the stored position covers;
- a batch starting past the stored position: records in between were not delivered to this
  consumer. The first time, it seeks back to the stored position (a rewind); if the batch
  after that seek still starts past it, those offsets are not in the log, a gap the
  partition guard judged in its snapshot (crossed, or the partition is stopped);
- otherwise the records at or past the stored position are written and those below it,
  redelivered, are skipped.

The decisions read only the locked rows, the guard's snapshot (taken before the lock) and
what this process remembers of its rewinds: nothing here waits for the broker or touches the
consumer while the rows are locked. A position that moved between the snapshot and the lock
is judged by the locked row: a gap the snapshot judged for another position is not crossed,
the partition is sought back instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import Enum

from service.core.decoding import Unusable
from service.core.domain import Event
from service.core.records import Record, TopicAndPartition, partition_name
from service.observability.logs import partition_fields
from service.positions.log_snapshot import Gap, LogSnapshot
from service.write_path.batch import Batch
from service.write_path.rewinds import Rewind, Rewinds

log = logging.getLogger("service.pipeline")

# Asked after the positions are locked: is the partition (topic, number) still this consumer's?
Ownership = Callable[[str, int], bool]


class Abandoned(Enum):
    """Why nothing of a partition is written in this transaction (its position stays)."""

    REVOKED = "revoked"
    HELD = "held"
    LOG_RESET = "log reset"
    GAP_REFUSED = "gap refused"
    REWIND = "rewind"


@dataclass(frozen=True, slots=True)
class LogReset:
    stored: int
    first: int
    log_end: int


@dataclass(slots=True)
class Admission:
    """The verdict on one batch: what is written, what is skipped, what is abandoned, and
    what the partition guard is told once the transaction has committed."""

    # The locked positions of the partitions written.
    positions: dict[TopicAndPartition, int]
    abandoned: dict[TopicAndPartition, Abandoned] = field(default_factory=dict)
    abandoned_records: int = 0
    rewinds: dict[TopicAndPartition, Rewind] = field(default_factory=dict)
    log_resets: dict[TopicAndPartition, LogReset] = field(default_factory=dict)
    gaps: dict[TopicAndPartition, Gap] = field(default_factory=dict)
    # The records to write, their decoded items, and each partition's next position.
    fresh: list[Record] = field(default_factory=list)
    items: list[Event | Unusable] = field(default_factory=list)
    next_offsets: dict[TopicAndPartition, int] = field(default_factory=dict)
    redelivered: int = 0


def admit(
    batch: Batch,
    locked: dict[TopicAndPartition, int],
    snapshot: LogSnapshot,
    rewinds: Rewinds,
    still_owned: Ownership,
) -> Admission:
    """Decide, for each partition of `batch`, on its `locked` position."""
    admission = Admission(dict(locked))
    revoked = [tp for tp in sorted(locked) if not still_owned(*tp)]
    _abandon(admission, batch, revoked, Abandoned.REVOKED)
    for tp in sorted(admission.positions):
        stored, first = admission.positions[tp], batch.first[tp]
        if tp in snapshot.held:
            _abandon(admission, batch, [tp], Abandoned.HELD)
        elif first < stored:
            end = snapshot.log_ends.get(tp)
            if end is not None and end < stored:
                admission.log_resets[tp] = LogReset(stored, first, end)
                _abandon(admission, batch, [tp], Abandoned.LOG_RESET)
        elif first > stored:
            gap = snapshot.gaps.get(tp)
            if gap is None or gap.stored != stored or rewinds.sought_to(tp) != stored:
                _abandon(admission, batch, [tp], Abandoned.REWIND)
                continue
            admission.gaps[tp] = gap
            if not gap.accepted:
                _abandon(admission, batch, [tp], Abandoned.GAP_REFUSED)
    _skip_redelivered(admission, batch)
    return admission


def _abandon(
    admission: Admission, batch: Batch, tps: Collection[TopicAndPartition], why: Abandoned
) -> None:
    """Write nothing of `tps` in this transaction: their records are counted as abandoned
    and their positions stay. A rewind is reported for the consumer to seek back; the other
    causes are said by the partition guard (held, log reset, gap refused) or here (revoked)."""
    if not tps:
        return
    for tp in tps:
        admission.abandoned[tp] = why
        admission.abandoned_records += batch.size(tp)
        stored = admission.positions.pop(tp)
        if why is Abandoned.REWIND:
            first = batch.first[tp]
            admission.rewinds[tp] = Rewind(stored, first)
            log.warning(
                "%s[%d]: batch starts at offset %d but the database is at %d; seeking back "
                "so no record is skipped",
                *tp,
                first,
                stored,
                extra=partition_fields(tp, first) | {"stored_offset": stored},
            )
    if why is Abandoned.REVOKED:
        log.info(
            "abandoning records of revoked partitions %s",
            sorted(tps),
            extra={"partitions": [partition_name(tp) for tp in sorted(tps)]},
        )


def _skip_redelivered(admission: Admission, batch: Batch) -> None:
    """Keep the records at or past their partition's stored position (partitions abandoned
    are left out), with their decoded items, and each partition's next position."""
    records, decoded = batch.records, batch.decoded
    for run in batch.runs:
        stored = admission.positions.get(run.tp)
        if stored is None:
            continue
        start, stop = run.start, run.stop
        if records[start].offset < stored:  # redelivered: skip up to the stored position
            start = next((i for i in range(start, stop) if records[i].offset >= stored), stop)
        if start == stop:
            continue
        admission.fresh.extend(records[start:stop])
        admission.items.extend(decoded[start:stop])
        following = records[stop - 1].offset + 1
        if following > admission.next_offsets.get(run.tp, 0):
            admission.next_offsets[run.tp] = following
    admission.redelivered = len(batch) - len(admission.fresh) - admission.abandoned_records
