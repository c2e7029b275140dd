"""Per-partition progress of the write path: lag, time since the last progress, stalls.

Pure bookkeeping with an injected clock; the I/O (log offsets, stored positions) happens in
service/health/position_watch.py. The database is the only source of positions: every observation
is given the positions PostgreSQL holds, and lag is the log end minus those, never the
consumer's fetch position or Kafka's committed offsets. Between observations the write path
reports each committed batch's positions (`committed`, once per batch, a few dict writes) and
the partition guard each position it resumed a partition at (`resumed`), so the tracker also
knows what this process has seen committed: a database that later holds less has lost
commits (`lost_commits`).

A partition makes progress when its stored position advances, and also whenever it is seen
caught up (there is nothing to do). Lag that is first seen after the partition was caught up
starts its stall clock at that moment, so sparse observations never turn old progress into a
false stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from service.core.records import TopicAndPartition

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """One assigned partition as last observed."""

    tp: TopicAndPartition
    stored: int | None  # next offset the database holds for it (None: not known yet)
    log_start: int | None
    log_end: int | None
    lag: int | None  # records in the log not yet applied (None: unknown)
    seconds_since_progress: float  # 0 while caught up

    def stalled(self, timeout_s: float) -> bool:
        return bool(self.lag) and self.seconds_since_progress >= timeout_s


@dataclass(slots=True)
class _State:
    stored: int | None
    progress_at: float
    caught_up: bool = True  # as last observed (a new partition has not been seen behind)


class ProgressTracker:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[TopicAndPartition, _State] = {}
        self._snapshot: tuple[PartitionProgress, ...] = ()

    def committed(self, next_offsets: Mapping[TopicAndPartition, int]) -> None:
        """A batch committed these next offsets (BatchReport.next_offsets)."""
        if not next_offsets:
            return
        now = self._clock()
        for tp, offset in next_offsets.items():
            state = self._states.get(tp)
            if state is None:
                self._states[tp] = _State(offset, now)
            elif state.stored != offset:
                state.stored = offset
                state.progress_at = now

    def resumed(self, tp: TopicAndPartition, offset: int) -> None:
        """The consumer resumed `tp` at the stored position `offset` (on assignment, or after
        a check): it is the partition's position now, even if lower than before."""
        now = self._clock()
        state = self._states.get(tp)
        if state is None:
            self._states[tp] = _State(offset, now)
        elif state.stored != offset:
            state.stored, state.progress_at, state.caught_up = offset, now, False

    def positions(self) -> dict[TopicAndPartition, int]:
        """What this process knows each partition's stored position to be (committed by its
        batches, resumed at, or read from the database)."""
        return {tp: s.stored for tp, s in self._states.items() if s.stored is not None}

    def observe(
        self,
        assigned: Iterable[TopicAndPartition],
        stored: Mapping[TopicAndPartition, int],
        log_starts: Mapping[TopicAndPartition, int],
        log_ends: Mapping[TopicAndPartition, int],
    ) -> tuple[PartitionProgress, ...]:
        """Compare the assigned partitions' positions in the database (`stored`, read after
        the commits reported so far; empty if it could not be read) with the log; forget the
        partitions no longer assigned.

        A stored position only moves the tracker forward: one read before a batch committed
        may arrive after it. A database that holds less than this process saw committed is
        `lost_commits`' business; the partition's position drops when it is resumed there.
        A partition with no stored position resumes at the log start (the consumer seeks
        there), so everything in the log is its lag. Stored positions below the log start
        count from the log start: records deleted by retention cannot be applied.
        """
        now = self._clock()
        wanted = set(assigned)
        for tp in set(self._states) - wanted:
            del self._states[tp]
        snapshot = []
        for tp in sorted(wanted):
            state = self._states.setdefault(tp, _State(None, now))
            offset = stored.get(tp)
            if offset is not None and (state.stored is None or offset > state.stored):
                if state.stored is not None:
                    state.progress_at = now
                state.stored = offset
            start, end = log_starts.get(tp), log_ends.get(tp)
            lag = _lag(state.stored, start, end)
            if lag == 0:
                state.progress_at, state.caught_up = now, True
            elif lag is not None:
                if state.caught_up:  # behind since some time after the last look
                    state.progress_at = now
                state.caught_up = False
            since = 0.0 if lag == 0 else max(now - state.progress_at, 0.0)
            snapshot.append(PartitionProgress(tp, state.stored, start, end, lag, since))
        self._snapshot = tuple(snapshot)
        return self._snapshot

    @property
    def snapshot(self) -> tuple[PartitionProgress, ...]:
        """The partitions as last observed."""
        return self._snapshot


def _lag(stored: int | None, start: int | None, end: int | None) -> int | None:
    if end is None:
        return None
    if stored is None:
        return None if start is None else max(end - start, 0)
    return max(end - max(stored, start or 0), 0)


def stall_problem(snapshot: Iterable[PartitionProgress], timeout_s: float) -> str | None:
    """None unless some partition has lag and has not progressed for `timeout_s`; then what
    is wrong and where to look."""
    stalled = [p for p in snapshot if p.stalled(timeout_s)]
    if not stalled:
        return None
    where = ", ".join(
        f"{p.tp[0]}[{p.tp[1]}] lag {p.lag} (stored position {p.stored}, log end {p.log_end}), "
        f"no progress for {p.seconds_since_progress:.0f}s"
        for p in stalled
    )
    return (
        f"stalled with lag: {where} (STALL_TIMEOUT_S={timeout_s:g}); no batch has committed: "
        "look for ERROR/WARNING lines of service.pipeline and service.retry in the log; if "
        "there are none, a transaction is waiting inside PostgreSQL (look for locks in "
        "pg_stat_activity). Fix the cause and the consumer resumes by itself"
    )


def lost_commits(
    known: Mapping[TopicAndPartition, int], stored: Mapping[TopicAndPartition, int | None]
) -> dict[TopicAndPartition, tuple[int, int]]:
    """The partitions whose position in the database is behind what this process knew before
    reading it, as (stored, known): transactions it saw committed are gone (a failover to a
    replica that had not received them, a restore from a backup). A missing row counts as 0.
    `known` must be taken before the read: a commit acknowledged before a read is in it."""
    lost = {}
    for tp, offset in stored.items():
        before = known.get(tp)
        if before is not None and (offset or 0) < before:
            lost[tp] = (offset or 0, before)
    return lost
