"""The write path's per-partition decisions over batches of several partitions, each run of
records starting somewhere inside the batch: the redelivery skip, the gap guard and the
hold-back. Every partition is decided on its own; one partition's verdict never stops the
others from being looked at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.core.decoding import Unusable
from service.core.domain import Reason
from service.core.records import partition_runs
from service.write_path.retry import Backoff
from service.write_path.transaction import BatchReport, WritePath, _fresh
from tests.support.write_path import MemoryDeadLetterSink, SimpleRecord

TP = tuple[str, int]


def batch(*runs: tuple[int, list[int]]) -> list[SimpleRecord]:
    """Records of partition p at the given offsets, run after run, in this order."""
    return [SimpleRecord("t", p, o, b"1", b"x") for p, offsets in runs for o in offsets]


@dataclass
class Guard:
    held: set[TP] = field(default_factory=set)
    reset: set[TP] = field(default_factory=set)
    refused_gaps: set[TP] = field(default_factory=set)
    asked_reset: list[tuple[TP, int, int]] = field(default_factory=list)
    asked_gap: list[tuple[TP, int, int]] = field(default_factory=list)

    def holds(self, tp: TP) -> bool:
        return tp in self.held

    def log_was_reset(self, tp: TP, stored: int, first_offset: int) -> bool:
        self.asked_reset.append((tp, stored, first_offset))
        return tp in self.reset

    async def accept_gap(self, tp: TP, stored: int, first_offset: int) -> bool:
        self.asked_gap.append((tp, stored, first_offset))
        return tp not in self.refused_gaps


def write_path(guard: Guard | None = None) -> WritePath:
    return WritePath(
        None,  # type: ignore[arg-type]
        MemoryDeadLetterSink(),
        "g",
        Backoff(0.001, 0.002),
        guard=guard,  # type: ignore[arg-type]
    )


def test_each_partition_skips_only_its_own_redelivered_records() -> None:
    records = batch((1, [100]), (0, [3, 4, 5]), (2, [0, 1]), (1, [101]))
    items: list[Any] = [Unusable(Reason.INVALID_JSON, f"#{r.offset}") for r in records]
    positions = {("t", 1): 101, ("t", 0): 4, ("t", 2): 0}

    fresh, fresh_items, next_offsets = _fresh(records, items, partition_runs(records), positions)

    # Partition 1's first run is all redelivered; the partitions after it are still looked at,
    # and partition 0's skip never reaches back into partition 1's run before it.
    assert [(r.partition, r.offset) for r in fresh] == [(0, 4), (0, 5), (2, 0), (2, 1), (1, 101)]
    assert [i.message for i in fresh_items] == ["#4", "#5", "#0", "#1", "#101"]
    assert next_offsets == {("t", 0): 6, ("t", 2): 2, ("t", 1): 102}


async def test_the_gap_guard_decides_every_partition_and_counts_every_abandoned_record() -> None:
    sink = write_path()
    sink._rewound[("t", 2)] = 8  # partition 2 was rewound to 8 before: its gap is accepted
    records = batch((0, [5]), (9, [0]), (2, [10, 11]), (3, [20, 21, 22]), (4, [7]))
    positions = {("t", 0): 5, ("t", 2): 8, ("t", 3): 15, ("t", 4): 3}
    report = BatchReport()

    await sink._guard_gaps(records, partition_runs(records), positions, report)

    assert positions == {("t", 0): 5, ("t", 2): 8}
    assert report.rewind == {("t", 3): 15, ("t", 4): 3}
    assert report.fence == {("t", 3): 20, ("t", 4): 7}
    assert report.abandoned == 4


async def test_gaps_the_guard_refuses_are_abandoned_partition_by_partition() -> None:
    guard = Guard(refused_gaps={("t", 1), ("t", 2)})
    sink = write_path(guard)
    sink._rewound.update({("t", 0): 4, ("t", 1): 4, ("t", 2): 0})
    records = batch((0, [6]), (1, [9, 10]), (2, [3, 4, 5]))
    positions = {("t", 0): 4, ("t", 1): 4, ("t", 2): 0}
    report = BatchReport(abandoned=1)

    await sink._guard_gaps(records, partition_runs(records), positions, report)

    assert guard.asked_gap == [(("t", 0), 4, 6), (("t", 1), 4, 9), (("t", 2), 0, 3)]
    assert positions == {("t", 0): 4}
    assert (report.abandoned, report.rewind) == (1 + 2 + 3, {})


def test_held_and_reset_partitions_are_abandoned_and_the_rest_kept() -> None:
    guard = Guard(held={("t", 1)}, reset={("t", 2)})
    sink = write_path(guard)
    records = batch((0, [5, 6]), (1, [3, 4]), (2, [1, 2]), (3, [0]), (4, [8]))
    positions = {("t", 0): 5, ("t", 1): 3, ("t", 2): 9, ("t", 3): 4, ("t", 4): 2}
    report = BatchReport(abandoned=1)

    sink._hold_back(records, partition_runs(records), positions, report)

    assert positions == {("t", 0): 5, ("t", 3): 4, ("t", 4): 2}
    assert report.abandoned == 1 + 2 + 2
    # Asked only where records below the stored position arrived (not at or past it).
    assert guard.asked_reset == [(("t", 2), 9, 1), (("t", 3), 4, 0)]
