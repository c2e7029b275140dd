"""The admission's per-partition decisions over batches of several partitions, each run of
records starting somewhere inside the batch: the redelivery skip, the gap guard and the
hold-back. Every partition is decided on its own; one partition's verdict never stops the
others from being looked at."""

from __future__ import annotations

from typing import Any

from service.core.decoding import Unusable
from service.core.domain import Reason
from service.positions.log_snapshot import Gap, LogSnapshot
from service.write_path.admission import Abandoned, LogReset, admit
from service.write_path.batch import Batch
from service.write_path.rewinds import Rewind, Rewinds
from testbed.write_path import owns_everything
from tests.support.write_path import SimpleRecord

TP = tuple[str, int]


def batch(*runs: tuple[int, list[int]]) -> Batch:
    """Records of partition p at the given offsets, run after run, in this order."""
    records = [SimpleRecord("t", p, o, b"1", b"x") for p, offsets in runs for o in offsets]
    items: list[Any] = [Unusable(Reason.INVALID_JSON, f"#{r.offset}") for r in records]
    return Batch.of(records, items)


def sought(**to: int) -> Rewinds:
    """Rewinds remembering `p2=8`: partition ("t", 2) was sought back to 8."""
    rewinds = Rewinds()
    rewinds.remember({("t", int(k[1:])): Rewind(v, v) for k, v in to.items()})
    return rewinds


def test_each_partition_skips_only_its_own_redelivered_records() -> None:
    b = batch((1, [100]), (0, [3, 4, 5]), (2, [0, 1]), (1, [101]))
    positions = {("t", 1): 101, ("t", 0): 4, ("t", 2): 0}

    admission = admit(b, positions, LogSnapshot(), Rewinds(), owns_everything)

    # Partition 1's first run is all redelivered; the partitions after it are still looked at,
    # and partition 0's skip never reaches back into partition 1's run before it.
    fresh = [(r.partition, r.offset) for r in admission.fresh]
    assert fresh == [(0, 4), (0, 5), (2, 0), (2, 1), (1, 101)]
    assert [i.message for i in admission.items] == ["#4", "#5", "#0", "#1", "#101"]
    assert admission.next_offsets == {("t", 0): 6, ("t", 2): 2, ("t", 1): 102}
    assert (admission.redelivered, admission.abandoned_records) == (2, 0)


def test_the_gap_guard_decides_every_partition_and_counts_every_abandoned_record() -> None:
    b = batch((0, [5]), (9, [0]), (2, [10, 11]), (3, [20, 21, 22]), (4, [7]))
    positions = {("t", 0): 5, ("t", 2): 8, ("t", 3): 15, ("t", 4): 3}
    # Partition 2 was rewound to 8 before and the guard judged its gap: it is crossed.
    gap = Gap(8, 10, 0, 12, accepted=True)
    snapshot = LogSnapshot(gaps={("t", 2): gap})

    admission = admit(b, positions, snapshot, sought(p2=8), owns_everything)

    assert admission.positions == {("t", 0): 5, ("t", 2): 8}
    assert admission.rewinds == {("t", 3): Rewind(15, 20), ("t", 4): Rewind(3, 7)}
    assert admission.gaps == {("t", 2): gap}
    assert admission.abandoned == {("t", 3): Abandoned.REWIND, ("t", 4): Abandoned.REWIND}
    assert admission.abandoned_records == 4
    assert [(r.partition, r.offset) for r in admission.fresh] == [(0, 5), (2, 10), (2, 11)]


def test_gaps_the_guard_refuses_are_abandoned_partition_by_partition() -> None:
    b = batch((0, [6]), (1, [9, 10]), (2, [3, 4, 5]))
    positions = {("t", 0): 4, ("t", 1): 4, ("t", 2): 0}
    gaps = {
        ("t", 0): Gap(4, 6, 0, 7, accepted=True),
        ("t", 1): Gap(4, 9, 9, 11, accepted=False),
        ("t", 2): Gap(0, 3, 3, 6, accepted=False),
    }

    admission = admit(
        b, positions, LogSnapshot(gaps=gaps), sought(p0=4, p1=4, p2=0), owns_everything
    )

    assert admission.positions == {("t", 0): 4}
    assert admission.gaps == gaps  # all three told to the guard after the transaction
    assert admission.abandoned == {("t", 1): Abandoned.GAP_REFUSED, ("t", 2): Abandoned.GAP_REFUSED}
    assert (admission.abandoned_records, admission.rewinds) == (2 + 3, {})


def test_held_and_reset_partitions_are_abandoned_and_the_rest_kept() -> None:
    b = batch((0, [5, 6]), (1, [3, 4]), (2, [1, 2]), (3, [0]), (4, [2]), (5, [1]))
    positions = {("t", 0): 5, ("t", 1): 3, ("t", 2): 9, ("t", 3): 4, ("t", 4): 2, ("t", 5): 3}
    # Partition 2's log now ends at 3, below its stored 9: a new log. Partition 3's ends at 4:
    # its records below the stored position are redeliveries. Partition 5's end is unknown.
    snapshot = LogSnapshot(held=frozenset({("t", 1)}), log_ends={("t", 2): 3, ("t", 3): 4})

    admission = admit(b, positions, snapshot, Rewinds(), owns_everything)

    assert admission.positions == {("t", 0): 5, ("t", 3): 4, ("t", 4): 2, ("t", 5): 3}
    assert admission.abandoned == {("t", 1): Abandoned.HELD, ("t", 2): Abandoned.LOG_RESET}
    assert admission.log_resets == {("t", 2): LogReset(9, 1, 3)}
    assert admission.abandoned_records == 2 + 2


def test_revoked_partitions_are_abandoned_before_anything_else_is_asked() -> None:
    b = batch((0, [5]), (1, [9]), (2, [1]))
    positions = {("t", 0): 5, ("t", 1): 4, ("t", 2): 0}
    snapshot = LogSnapshot(held=frozenset({("t", 2)}))

    admission = admit(b, positions, snapshot, Rewinds(), lambda topic, p: p == 0)

    assert admission.abandoned == {("t", 1): Abandoned.REVOKED, ("t", 2): Abandoned.REVOKED}
    assert (admission.positions, admission.rewinds) == ({("t", 0): 5}, {})


def test_a_gap_judged_for_another_position_is_not_crossed_but_sought_back() -> None:
    """The position moved between the guard's snapshot and the lock (another instance wrote,
    or an operator reset it): the snapshot's gap no longer describes the locked row."""
    b = batch((0, [20, 21]))
    snapshot = LogSnapshot(gaps={("t", 0): Gap(10, 20, 0, 22, accepted=True)})

    moved = admit(b, {("t", 0): 12}, snapshot, sought(p0=10), owns_everything)
    assert (moved.positions, moved.gaps) == ({}, {})
    assert moved.rewinds == {("t", 0): Rewind(12, 20)}

    # ... and a partition resumed from outside since the snapshot (its rewind forgotten).
    forgotten = sought(p0=10)
    forgotten.forget(("t", 0))
    again = admit(b, {("t", 0): 10}, snapshot, forgotten, owns_everything)
    assert (again.gaps, again.rewinds) == ({}, {("t", 0): Rewind(10, 20)})
