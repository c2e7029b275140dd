"""Split a batch into groups of whole partitions, to write them as concurrent transactions:
pure, no I/O.

Every record of a partition goes to the same group, in its order, so each partition's
records still commit in order and each transaction locks a disjoint set of position rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

from service.records import Record, TopicPartition

T = TypeVar("T")


def split_by_partition(
    records: Sequence[Record], decoded: Sequence[T], ways: int
) -> list[tuple[list[Record], list[T]]]:
    """At most `ways` non-empty groups of (records, decoded items), balanced by record count
    (largest partitions first, each to the group with the fewest records so far)."""
    sizes = Counter((record.topic, record.partition) for record in records)
    if ways <= 1 or len(sizes) <= 1:
        return [(list(records), list(decoded))] if records else []
    groups = min(ways, len(sizes))
    load = [0] * groups
    home: dict[TopicPartition, int] = {}
    for tp, count in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        lightest = load.index(min(load))
        home[tp] = lightest
        load[lightest] += count
    split: list[tuple[list[Record], list[T]]] = [([], []) for _ in range(groups)]
    for record, item in zip(records, decoded, strict=True):
        group = split[home[(record.topic, record.partition)]]
        group[0].append(record)
        group[1].append(item)
    return split
