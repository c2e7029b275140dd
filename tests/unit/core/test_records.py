"""Splitting a batch into partition runs (the write path's per-partition work)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from service.core.records import Run, first_offsets, partition_runs
from tests.support.write_path import SimpleRecord


def _batch(partitions: list[tuple[str, int]]) -> list[SimpleRecord]:
    return [SimpleRecord(t, p, i, None, b"{}") for i, (t, p) in enumerate(partitions)]


def test_an_empty_batch_has_no_runs() -> None:
    assert partition_runs([]) == []


def test_runs_follow_partition_and_topic_changes() -> None:
    batch = _batch([("a", 0), ("a", 0), ("a", 1), ("b", 1), ("b", 1), ("a", 0)])

    assert partition_runs(batch) == [
        Run(("a", 0), 0, 2),
        Run(("a", 1), 2, 3),
        Run(("b", 1), 3, 5),
        Run(("a", 0), 5, 6),
    ]


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2)), max_size=40))
def test_runs_cover_the_batch_in_order_each_of_one_partition(
    partitions: list[tuple[str, int]],
) -> None:
    batch = _batch(partitions)
    runs = partition_runs(batch)

    assert [i for run in runs for i in range(run.start, run.stop)] == list(range(len(batch)))
    for run in runs:
        assert {(r.topic, r.partition) for r in batch[run.start : run.stop]} == {run.tp}
    for before, after in pairwise(runs):
        assert before.tp != after.tp


def test_first_offsets_are_each_partitions_lowest_offset() -> None:
    batch = [
        SimpleRecord("a", 0, 7, None, b"{}"),
        SimpleRecord("a", 0, 8, None, b"{}"),
        SimpleRecord("a", 1, 3, None, b"{}"),
        SimpleRecord("a", 0, 5, None, b"{}"),  # a later run of partition 0 starting lower
    ]

    assert first_offsets(batch) == {("a", 0): 5, ("a", 1): 3}
    assert first_offsets(batch, partition_runs(batch)) == first_offsets(batch)
    assert first_offsets([]) == {}


def test_a_later_run_of_a_partition_does_not_move_its_first_offset() -> None:
    """Offsets rise within a partition, so its later runs start higher: the first run's
    first offset is the partition's first."""
    batch = [
        SimpleRecord("a", 0, 5, None, b"{}"),
        SimpleRecord("a", 1, 3, None, b"{}"),
        SimpleRecord("a", 0, 6, None, b"{}"),
        SimpleRecord("b", 0, 1, None, b"{}"),
        SimpleRecord("a", 1, 4, None, b"{}"),
    ]
    assert first_offsets(batch) == {("a", 0): 5, ("a", 1): 3, ("b", 0): 1}


def test_a_batch_of_one_record_is_one_run() -> None:
    (only,) = _batch([("t", 4)])
    assert partition_runs([only]) == [Run(("t", 4), 0, 1)]
    assert first_offsets([only]) == {("t", 4): 0}
