"""OverlappedWriter: order, reports, and rewinds while a batch is in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from service.core.decoding import Unusable
from service.core.domain import Event, Reason
from service.core.records import Record
from service.write_path.batch import Batch
from service.write_path.overlap import OverlappedWriter
from service.write_path.rewinds import Rewind, Rewinds
from service.write_path.transaction import BatchReport
from testbed.write_path import owns_everything
from tests.support.write_path import SimpleRecord, seeks_nowhere


class FakeProcessor:
    """Records what is written; a batch whose first record is in `rewind_at` asks for a
    rewind of its partition to offset 0."""

    def __init__(self, rewind_at: set[int] | None = None) -> None:
        self.written: list[list[int]] = []
        self.items: list[list[tuple[int, int, Reason]]] = []  # (partition, offset, decoded)
        self.rewind_at = rewind_at or set()
        self.rewinds = Rewinds()

    async def decode(self, records: Sequence[Record]) -> list[Event | Unusable]:
        return [Unusable(Reason.INVALID_JSON, "x") for _ in records]

    async def write(self, batch: Batch, still_owned: Any) -> BatchReport:
        await asyncio.sleep(0.01)
        offsets = [r.offset for r in batch.records]
        self.written.append(offsets)
        self.items.append(
            [
                (r.partition, r.offset, item.reason)
                for r, item in zip(batch.records, batch.decoded, strict=True)
            ]  # type: ignore[union-attr]
        )
        report = BatchReport(records=len(offsets))
        if offsets[0] in self.rewind_at:
            report.rewinds[("t", 0)] = Rewind(0, offsets[0])
        self.rewinds.remember(report.rewinds)  # as WritePath.write does once it committed
        return report


def batch(*offsets: int) -> list[SimpleRecord]:
    return [SimpleRecord("t", 0, o, None, b"") for o in offsets]


async def test_batches_are_written_in_order_and_reported_one_call_later() -> None:
    write_path = FakeProcessor()
    writer = OverlappedWriter(write_path)  # type: ignore[arg-type]
    assert await writer.submit(batch(0, 1), owns_everything, seeks_nowhere) is None
    first = await writer.submit(batch(2, 3), owns_everything, seeks_nowhere)
    assert first is not None and first.records == 2
    last = await writer.drain()
    assert last is not None and last.records == 2
    assert write_path.written == [[0, 1], [2, 3]]
    assert await writer.drain() is None


async def test_a_rewind_seeks_at_once_and_drops_what_was_fetched_before_the_seek() -> None:
    write_path = FakeProcessor(rewind_at={5})
    writer = OverlappedWriter(write_path)  # type: ignore[arg-type]
    seeks: list[tuple[tuple[str, int], int]] = []

    def seek(tp: tuple[str, int], offset: int) -> None:
        seeks.append((tp, offset))

    await writer.submit(batch(5, 6), owns_everything, seek)
    await asyncio.sleep(0.05)  # the batch finishes while no new records arrive
    assert seeks == [(("t", 0), 0)]

    await writer.submit(batch(7, 8), owns_everything, seek)  # fetched before the seek: dropped
    await writer.submit(batch(0, 1, 2), owns_everything, seek)  # the refetch: fence lifted
    await writer.submit(batch(3, 4), owns_everything, seek)
    await writer.drain()
    assert write_path.written == [[5, 6], [0, 1, 2], [3, 4]]


async def test_a_partition_resumed_from_outside_forgets_its_fence_and_rewind() -> None:
    """Revoked before its refetch came, the partition is resumed later at a stored position
    past the fence (another owner moved it on): with the fence kept, every batch of it would
    be dropped as fetched before the seek, for ever."""
    write_path = FakeProcessor(rewind_at={5})
    writer = OverlappedWriter(write_path)  # type: ignore[arg-type]
    await writer.submit(batch(5, 6), owns_everything, seeks_nowhere)
    await writer.drain()
    assert write_path.rewinds.sought_to(("t", 0)) == 0
    writer.forget(("t", 0))
    assert write_path.rewinds.sought_to(("t", 0)) is None  # a later gap is sought back again
    await writer.submit(batch(40, 41), owns_everything, seeks_nowhere)  # resumed at 40
    await writer.drain()
    assert write_path.written == [[5, 6], [40, 41]]


async def test_a_batch_fetched_before_the_seek_keeps_its_other_partitions_records() -> None:
    write_path = FakeProcessor(rewind_at={5})
    writer = OverlappedWriter(write_path)  # type: ignore[arg-type]
    await writer.submit(batch(5, 6), owns_everything, seeks_nowhere)
    await writer.drain()
    other = [SimpleRecord("t", 1, o, None, b"") for o in (3, 4)]
    await writer.submit(batch(7, 8) + other, owns_everything, seeks_nowhere)  # t[0] fenced
    await writer.drain()
    assert write_path.items[-1] == [(1, 3, Reason.INVALID_JSON), (1, 4, Reason.INVALID_JSON)]
