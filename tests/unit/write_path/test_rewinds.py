"""What the write path remembers of its rewinds, and for how long: a partition written past
where it was sought to costs no more look at the log start."""

from __future__ import annotations

from service.write_path.admission import admit
from service.write_path.batch import Batch
from service.write_path.rewinds import Rewind, Rewinds
from testbed.fake_consumer import FakeConsumer
from testbed.write_path import guard, owns_everything
from tests.support.write_path import SimpleRecord


def batch(partition: int, *offsets: int) -> Batch:
    records = [SimpleRecord("t", partition, o, b"1", b"x") for o in offsets]
    return Batch.of(records, [None] * len(records))  # type: ignore[list-item]


async def test_after_the_refetch_is_written_later_batches_ask_kafka_nothing() -> None:
    consumer = FakeConsumer([("t", 0)], log_ends={("t", 0): 30})
    stops, rewinds = guard(consumer), Rewinds()
    rewinds.remember({("t", 0): Rewind(4, 6)})  # sought back to 4: a gap may follow

    refetch = batch(0, 4, 5, 6)  # the refetch starts at the stored position: no gap
    assert rewinds.sought(refetch.first) == {}
    snapshot = await stops.snapshot(refetch.first, rewinds.sought(refetch.first))
    written = admit(refetch, {("t", 0): 4}, snapshot, rewinds, owns_everything)
    assert written.next_offsets == {("t", 0): 7} and not written.gaps
    rewinds.settle(written.next_offsets)  # what write() does once the batch committed

    consumer.events.clear()
    for later in (batch(0, 7, 8), batch(0, 9)):
        assert rewinds.sought(later.first) == {}
        await stops.snapshot(later.first, rewinds.sought(later.first))
    assert consumer.events == []  # no beginning_offsets round trip per batch
    assert rewinds.sought_to(("t", 0)) is None


async def test_a_gap_refused_keeps_its_memory_until_a_batch_is_written_past_it() -> None:
    rewinds = Rewinds()
    rewinds.remember({("t", 0): Rewind(4, 6)})
    rewinds.settle({})  # nothing of t[0] written (its gap was refused, or it was held)
    rewinds.settle({("t", 0): 4})  # not past where it was sought to
    assert rewinds.sought({("t", 0): 6}) == {("t", 0): 4}
    rewinds.settle({("t", 0): 8})  # the gap was crossed and 6..7 written
    assert rewinds.sought({("t", 0): 9}) == {}


def test_every_partition_fetched_before_its_seek_is_fenced_whatever_the_order() -> None:
    rewinds = Rewinds()
    rewinds.remember({("t", 1): Rewind(0, 5), ("t", 3): Rewind(2, 4)})
    first = {("t", 0): 9, ("t", 1): 7, ("t", 2): 3, ("t", 3): 2}  # t[3]: its refetch
    assert rewinds.fenced(first) == {("t", 1)}
    assert rewinds.fenced({("t", 3): 6}) == set()  # the refetch lifted t[3]'s fence


def test_a_partition_never_rewound_is_forgotten_without_error() -> None:
    """Every partition resumed from outside the write path is forgotten, rewound or not."""
    rewinds = Rewinds()
    rewinds.remember({("t", 0): Rewind(4, 6)})
    rewinds.forget(("t", 3))
    rewinds.forget(("t", 0))
    assert rewinds.sought_to(("t", 0)) is None
    assert rewinds.fenced({("t", 0): 7}) == set()
