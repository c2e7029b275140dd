"""Splitting a batch into concurrent transactions by whole partitions."""

from __future__ import annotations

from service.partition_groups import split_by_partition
from service.records import SimpleRecord


def _batch(partitions: list[int]) -> list[SimpleRecord]:
    offsets: dict[int, int] = {}
    records = []
    for partition in partitions:
        offsets[partition] = offsets.get(partition, -1) + 1
        records.append(SimpleRecord("t", partition, offsets[partition], b"k", b"v"))
    return records


def test_each_partition_goes_whole_to_one_group_in_its_order() -> None:
    records = _batch([0, 1, 2, 0, 1, 0, 3, 3, 2, 0])
    decoded = [f"item{i}" for i in range(len(records))]

    groups = split_by_partition(records, decoded, 2)

    assert len(groups) == 2
    homes: dict[int, int] = {}
    for index, (part, items) in enumerate(groups):
        assert [decoded[records.index(r)] for r in part] == items
        for record in part:
            assert homes.setdefault(record.partition, index) == index
        for partition in {r.partition for r in part}:
            offsets = [r.offset for r in part if r.partition == partition]
            assert offsets == sorted(offsets)
    assert sorted(r.offset for part, _ in groups for r in part if r.partition == 0) == [0, 1, 2, 3]
    # balanced: partition 0 (4 records) alone against 1, 2, 3 (2 each) would be 4 vs 6
    assert sorted(len(part) for part, _ in groups) == [4, 6]


def test_one_partition_or_one_way_keeps_the_batch_whole() -> None:
    records = _batch([0, 1, 0])
    assert split_by_partition(records, [1, 2, 3], 1) == [(records, [1, 2, 3])]
    single = _batch([4, 4])
    assert split_by_partition(single, ["a", "b"], 3) == [(single, ["a", "b"])]
    assert split_by_partition([], [], 2) == []


def test_never_more_groups_than_partitions() -> None:
    records = _batch([0, 1, 0, 1])
    groups = split_by_partition(records, list(range(4)), 8)
    assert sorted(sorted({r.partition for r in part}) for part, _ in groups) == [[0], [1]]
