"""Per-partition progress of the write path: lag, time since the last progress, stalls.

Pure bookkeeping with an injected clock; the I/O (log offsets, stored positions) happens in
service/probes.py. The write path reports each committed batch's positions (`committed`, once
per batch, a few dict writes); the log's offsets are looked at lazily, when readiness or
metrics are asked for (`observe`).

A partition makes progress when its stored position advances, and also whenever it is seen
caught up (there is nothing to do). Lag that is first seen after the partition was caught up
starts its stall clock at that moment, so sparse observations never turn old progress into a
false stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from service.records import TopicAndPartition

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """One assigned partition as last observed."""

    tp: TopicAndPartition
    stored: int | None  # next offset the database holds for it (None: not known yet)
    log_start: int | None
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

    def unknown(self, assigned: Iterable[TopicAndPartition]) -> set[TopicAndPartition]:
        """Assigned partitions whose stored position is not known yet (see `seed`)."""
        return {tp for tp in assigned if tp not in self._states or self._states[tp].stored is None}

    def seed(self, stored: Mapping[TopicAndPartition, int]) -> None:
        """Stored positions read from the database; they fill in unknown ones only (a batch
        committed since the read is newer) and are no progress."""
        now = self._clock()
        for tp, offset in stored.items():
            state = self._states.setdefault(tp, _State(None, now))
            if state.stored is None:
                state.stored = offset

    def observe(
        self,
        assigned: Iterable[TopicAndPartition],
        log_starts: Mapping[TopicAndPartition, int],
        log_ends: Mapping[TopicAndPartition, int],
    ) -> tuple[PartitionProgress, ...]:
        """Compare the assigned partitions with the log; forget those no longer assigned.

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
            start, end = log_starts.get(tp), log_ends.get(tp)
            lag = _lag(state.stored, start, end)
            if lag == 0:
                state.progress_at, state.caught_up = now, True
            elif lag is not None:
                if state.caught_up:  # behind since some time after the last look
                    state.progress_at = now
                state.caught_up = False
            since = 0.0 if lag == 0 else max(now - state.progress_at, 0.0)
            snapshot.append(PartitionProgress(tp, state.stored, start, lag, since))
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
        f"{p.tp[0]}[{p.tp[1]}] lag {p.lag} at offset {p.stored}, "
        f"no progress for {p.seconds_since_progress:.0f}s"
        for p in stalled
    )
    return (
        f"stalled with lag: {where} (STALL_TIMEOUT_S={timeout_s:g}); no batch has committed: "
        "look for ERROR/WARNING lines of service.pipeline and service.retry in the log; if "
        "there are none, a transaction is waiting inside PostgreSQL (look for locks in "
        "pg_stat_activity). Fix the cause and the consumer resumes by itself"
    )
